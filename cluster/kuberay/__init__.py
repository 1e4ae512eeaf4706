"""KubeRay manifests and the Dockerfile of Fathom's image; render keeps the RayService in step."""
