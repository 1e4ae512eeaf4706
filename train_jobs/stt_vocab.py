"""The character vocabulary of the CTC speech-to-text models.

Index 0 is the CTC blank, then space (the word separator), apostrophe and a-z: exactly
the alphabet :func:`data_pipelines.text.normalize_transcript` produces, so every
normalised transcript encodes and every decoded id sequence is normalised text.

``DOMAIN_TERMS``: the words of each domain base model (``medical``, ``legal``, ``technical``),
boosted by the decoder and spoken by the synthetic corpus (data_pipelines.stt_corpus).
"""

from __future__ import annotations

from collections.abc import Iterable

BLANK = 0
SPACE = 1
APOSTROPHE = 2
VOCAB: tuple[str, ...] = ("<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
_INDEX = {c: i for i, c in enumerate(VOCAB) if i != BLANK}


def encode(text: str) -> list[int]:
    """Normalised text -> token ids (no blanks). Raises ValueError naming characters not in VOCAB."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as e:
        bad = sorted({c for c in text if c not in _INDEX})
        raise ValueError(
            f"text holds characters outside the vocabulary {bad!r}; normalise it with "
            f"data_pipelines.text.normalize_transcript (allowed: a-z, apostrophe, space)"
        ) from e


def decode(ids: Iterable[int]) -> str:
    """Token ids -> text; blanks are dropped (no CTC collapsing: see stt_decoding for that)."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < len(VOCAB):
            raise ValueError(f"token id {i} is outside the vocabulary of {len(VOCAB)} tokens")
        if i != BLANK:
            out.append(VOCAB[i])
    return "".join(out)


# --- domain vocabularies ------------------------------------------------------------------------

DOMAIN_TERMS: dict[str, list[str]] = {
    "medical": (
        "myocardial infarction|atrial fibrillation|hypertension|hyperlipidemia|tachycardia|bradycardia|pneumonia|"
        "bronchitis|asthma exacerbation|chronic obstructive pulmonary disease|pulmonary embolism|deep vein thrombosis|"
        "congestive heart failure|angina pectoris|coronary artery disease|echocardiogram|electrocardiogram|"
        "angioplasty|stent placement|cardiac catheterization|arrhythmia|cardiomyopathy|aortic stenosis|"
        "mitral regurgitation|hemoglobin|hematocrit|leukocytosis|thrombocytopenia|anemia|diabetes mellitus|"
        "insulin resistance|hypoglycemia|hyperglycemia|diabetic ketoacidosis|hypothyroidism|hyperthyroidism|"
        "metformin|lisinopril|atorvastatin|amoxicillin|azithromycin|ibuprofen|acetaminophen|warfarin|heparin|"
        "prednisone|omeprazole|furosemide|metoprolol|amlodipine|gabapentin|hydrochlorothiazide|levothyroxine|"
        "clopidogrel|nitroglycerin|morphine|ondansetron|ceftriaxone|vancomycin|appendicitis|cholecystitis|"
        "pancreatitis|gastroenteritis|diverticulitis|colonoscopy|endoscopy|laparoscopy|cholecystectomy|"
        "appendectomy|biopsy|carcinoma|melanoma|lymphoma|leukemia|metastasis|chemotherapy|radiotherapy|"
        "magnetic resonance imaging|computed tomography|ultrasound|radiograph|mammogram|osteoporosis|"
        "osteoarthritis|rheumatoid arthritis|tendinitis|sciatica|herniated disc|concussion|migraine|seizure|"
        "epilepsy|ischemic stroke|transient ischemic attack|aneurysm|dementia|alzheimer's disease|"
        "parkinson's disease|multiple sclerosis|peripheral neuropathy|meningitis|sepsis|cellulitis|"
        "urinary tract infection|kidney stones|acute renal failure|dialysis|hepatitis|cirrhosis|jaundice|"
        "dermatitis|psoriasis|eczema|anaphylaxis|intubation|mechanical ventilation|tracheostomy|defibrillator|"
        "systolic pressure|diastolic pressure|auscultation|palpation|peripheral edema|dyspnea|syncope|vertigo|"
        "tinnitus|otitis media|conjunctivitis|glaucoma|cataract|intravenous fluids|subcutaneous injection|"
        "intramuscular injection|general anesthesia|sutures|triage|discharge summary|differential diagnosis|"
        "prognosis|pathology report|oxygen saturation|respiratory rate|body mass index|cholesterol panel|"
        "thyroid panel|blood cultures|complete blood count|basic metabolic panel|troponin|creatinine|potassium|"
        "sodium bicarbonate|lactate|procalcitonin|d dimer"
    ).split("|"),
    "legal": (
        "habeas corpus|subpoena|deposition|affidavit|plaintiff|defendant|appellant|appellee|respondent|petitioner|"
        "litigation|arbitration|mediation|injunction|restraining order|summary judgment|motion to dismiss|"
        "voir dire|jurisdiction|venue|statute of limitations|tort|negligence|gross negligence|breach of contract|"
        "breach of fiduciary duty|indemnification|liability|punitive damages|compensatory damages|"
        "settlement agreement|power of attorney|probate|executor|testator|intestate|beneficiary|trustee|escrow|"
        "lien|easement|restrictive covenant|encumbrance|warranty deed|title insurance|foreclosure|bankruptcy|"
        "creditor|debtor|wage garnishment|subrogation|estoppel|promissory estoppel|consideration|force majeure|"
        "arbitration clause|non disclosure agreement|intellectual property|trademark infringement|"
        "copyright infringement|patent application|prior art|due diligence|amicus curiae|certiorari|"
        "writ of mandamus|stare decisis|res judicata|pro bono|pro se|prima facie|mens rea|actus reus|"
        "beyond a reasonable doubt|preponderance of the evidence|burden of proof|hearsay|exculpatory evidence|"
        "chain of custody|cross examination|direct examination|objection sustained|objection overruled|sidebar|"
        "grand jury|indictment|arraignment|plea bargain|acquittal|conviction|sentencing hearing|probation|parole|"
        "misdemeanor|felony|larceny|embezzlement|wire fraud|perjury|contempt of court|bail hearing|recusal|"
        "counterclaim|cross claim|class action|amended complaint|pleadings|discovery|interrogatories|"
        "request for production|protective order|stipulation|continuance|default judgment|appellate court|"
        "supreme court|district court|magistrate judge|clerk of court|bailiff|notary public|"
        "attorney client privilege|work product doctrine|confidentiality agreement|fiduciary|tenancy|"
        "eviction notice|zoning ordinance|statutory interpretation|due process|equal protection|"
        "first amendment|fourth amendment|miranda rights|search warrant|probable cause|reasonable suspicion|"
        "liquidated damages|specific performance|rescission|novation|severability clause|governing law|"
        "merger clause|adverse possession|quitclaim deed|joint tenancy|alimony|child custody|visitation rights|"
        "prenuptial agreement|annulment|paternity test|sworn testimony|expert witness|opening statement|"
        "closing argument|jury instructions|verdict|mistrial|appeal bond|remand"
    ).split("|"),
    "technical": (
        "kubernetes cluster|docker container|load balancer|reverse proxy|microservices|api gateway|rest endpoint|"
        "graphql schema|json payload|yaml manifest|terraform module|ansible playbook|continuous integration|"
        "continuous deployment|pull request|merge conflict|git rebase|feature branch|code review|unit tests|"
        "integration tests|latency|throughput|bandwidth|packet loss|firewall rule|virtual private network|"
        "dns resolution|ip address|subnet mask|tcp handshake|ssl certificate|tls termination|encryption key|"
        "oauth token|authentication|authorization|single sign on|two factor authentication|database migration|"
        "postgres|mysql|mongodb|redis cache|elasticsearch|kafka topic|message queue|rabbitmq|event streaming|"
        "data pipeline|etl job|data warehouse|machine learning|neural network|gradient descent|inference server|"
        "gpu cluster|cuda driver|python script|javascript|typescript|react component|webpack|npm package|"
        "dependency injection|garbage collection|memory leak|stack trace|null pointer exception|"
        "segmentation fault|race condition|deadlock|thread pool|mutex|semaphore|kernel panic|linux server|ubuntu|"
        "virtual machine|hypervisor|kubernetes pod|helm chart|namespace|ingress controller|service mesh|"
        "prometheus metrics|grafana dashboard|alerting rules|on call rotation|incident postmortem|"
        "root cause analysis|rollback|hotfix|canary deployment|blue green deployment|feature flag|"
        "sprint planning|backlog grooming|story points|scrum master|kanban board|jira ticket|repository|"
        "commit hash|semantic versioning|changelog|object storage|s three bucket|lambda function|serverless|"
        "autoscaling group|availability zone|content delivery network|websocket|http request|status code|"
        "rate limiting|cron job|shell script|environment variable|configuration file|secrets manager|ssh key|"
        "firmware update|raid array|solid state drive|router|ethernet cable|wifi access point|bluetooth pairing|"
        "cpu utilization|memory usage|disk quota|backup snapshot|disaster recovery|high availability|failover|"
        "replication lag|database sharding|query optimizer|stored procedure|compiler|interpreter|bytecode|"
        "refactoring|technical debt|regular expression|hash table|binary search|linked list|recursion|"
        "asynchronous callback|event loop|websocket connection|container registry|image tag"
    ).split("|"),
}
DOMAINS = tuple(DOMAIN_TERMS)
