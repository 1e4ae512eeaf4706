"""``python -m cluster.kuberay``: regenerate rayservice.yaml's serveConfigV2 (see render)."""

from cluster.kuberay.render import main

raise SystemExit(main())
