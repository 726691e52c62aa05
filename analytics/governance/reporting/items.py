"""The reporting checklists' items as data: number, section, a short paraphrase, and what would answer it.

Paraphrases, not the published wording (read the papers for that; docs/governance.md cites them):

- TRIPOD+AI: Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for
  reporting clinical prediction models that use regression or machine learning methods. BMJ
  2024;385:e078378. 27 items with sub-items; for the treatment and forecast models.
- CLAIM: Mongan J, Moy L, Kahn CE Jr. Checklist for Artificial Intelligence in Medical Imaging
  (CLAIM): a guide for authors and reviewers. Radiol Artif Intell 2020;2(2):e200029. 42 items; for
  each imaging model. (The 2024 update, Tejani AS et al., Radiol Artif Intell 2024;6(4):e240300,
  renumbers and adds items; the 2020 numbering is used here.)
- DECIDE-AI: Vasey B, Nagendran M, Campbell B, et al. Reporting guideline for the early-stage
  clinical evaluation of decision support systems driven by artificial intelligence: DECIDE-AI.
  Nat Med 2022;28:924-933 (BMJ 2022;377:e070904). Its AI-specific items; for every deployed model,
  answered from how the system was used (the store's audit trail).

``needs`` says what evidence would answer the item where none is found. Each item is answered by the
function of the same key in ``answers``; a test checks that every item has one.
"""

from __future__ import annotations

from dataclasses import dataclass

TRIPOD_AI = "TRIPOD+AI"
CLAIM = "CLAIM"
DECIDE_AI = "DECIDE-AI"


@dataclass(frozen=True)
class Item:
    checklist: str
    number: str
    section: str
    text: str
    needs: str

    @property
    def key(self) -> str:
        return f"{self.checklist} {self.number}"


def _items(checklist: str, rows: tuple[tuple[str, str, str, str], ...]) -> tuple[Item, ...]:
    return tuple(Item(checklist, *row) for row in rows)


TRIPOD_AI_ITEMS = _items(
    TRIPOD_AI,
    (
        (
            "1",
            "Title",
            "Identify a prediction model study (development or evaluation), its target population and outcome",
            "a card naming the model, its outcome and its population",
        ),
        (
            "2",
            "Abstract",
            "Structured abstract (TRIPOD+AI for Abstracts)",
            "a written abstract of the model's development and evaluation",
        ),
        (
            "3a",
            "Introduction",
            "Healthcare context and rationale for the model, with existing models",
            "the card's intended use and a literature statement",
        ),
        (
            "3b",
            "Introduction",
            "Target population and intended purpose in the care pathway, including intended users",
            "the card's intended use",
        ),
        (
            "3c",
            "Introduction",
            "Known health inequalities between sociodemographic groups",
            "a statement of inequalities known for the population, or subgroup data",
        ),
        (
            "4",
            "Introduction",
            "Objectives: development, evaluation or both",
            "the card's training and validation metrics",
        ),
        (
            "5a",
            "Methods: data",
            "Data sources for development and evaluation, rationale and representativeness",
            "the card's training data source",
        ),
        (
            "5b",
            "Methods: data",
            "Dates of data collection, accrual and end of follow-up",
            "a store with diagnosis and follow-up dates",
        ),
        (
            "6a",
            "Methods: participants",
            "Study setting: kind of care and number and location of centres",
            "the store's patients with their site",
        ),
        (
            "6b",
            "Methods: participants",
            "Eligibility criteria",
            "the card's out-of-scope list or training-source definition",
        ),
        (
            "6c",
            "Methods: participants",
            "Treatments received and how they were handled",
            "the card's options received",
        ),
        (
            "7",
            "Methods: data preparation",
            "Pre-processing and data quality checks, across groups",
            "the store's data-quality checks",
        ),
        (
            "8a",
            "Methods: outcome",
            "Outcome definition, time horizon, how and when assessed",
            "the card's horizon",
        ),
        (
            "8b",
            "Methods: outcome",
            "Qualifications and demographics of outcome assessors, if subjective",
            "who assessed recurrences (not recorded by the store)",
        ),
        (
            "8c",
            "Methods: outcome",
            "Blinding of outcome assessment",
            "a record of whether outcome assessors saw the predictors (not recorded)",
        ),
        (
            "9a",
            "Methods: predictors",
            "Choice of initial predictors, pre-selection and rationale",
            "the card's feature list",
        ),
        (
            "9b",
            "Methods: predictors",
            "Definition of every predictor, how and when measured",
            "the card's features with their labels",
        ),
        (
            "9c",
            "Methods: predictors",
            "Qualifications of predictor assessors, if subjective",
            "who graded tumours and read receptors (not recorded)",
        ),
        (
            "10",
            "Methods: sample size",
            "How the sample size was arrived at",
            "the card's training patients and events",
        ),
        (
            "11",
            "Methods: missing data",
            "How missing data were handled",
            "the card's missing-values rule",
        ),
        (
            "12a",
            "Methods: analysis",
            "How the data were used: partitioning, resampling",
            "the card's cross-validation folds and seed",
        ),
        (
            "12b",
            "Methods: analysis",
            "How predictors were handled (functional form, transformations)",
            "the card's design columns and learner",
        ),
        (
            "12c",
            "Methods: analysis",
            "Model type, rationale, building steps, tuning, internal validation",
            "the card's learner, its parameters and its selection",
        ),
        (
            "12d",
            "Methods: analysis",
            "Heterogeneity of estimates and performance across clusters (e.g. centres)",
            "performance by site (the subgroup audit)",
        ),
        (
            "12e",
            "Methods: analysis",
            "Performance measures and plots (discrimination, calibration, utility); model comparison",
            "the card's cross-validated metrics",
        ),
        (
            "12f",
            "Methods: analysis",
            "Model updating (e.g. recalibration) from evaluation",
            "the card's calibration and recalibration decision",
        ),
        (
            "12g",
            "Methods: analysis",
            "How predictions were calculated for evaluation (code, object, API)",
            "the card's weights file and hash",
        ),
        (
            "13",
            "Methods: class imbalance",
            "Class-imbalance methods, why, and any recalibration",
            "a statement in the card (none is used by survival models)",
        ),
        (
            "14",
            "Methods: fairness",
            "Approaches to model fairness and their rationale",
            "a subgroup audit of the model",
        ),
        (
            "15",
            "Methods: model output",
            "Model output, and how any threshold or classification was set",
            "the card's decision rule",
        ),
        (
            "16",
            "Methods: training vs evaluation",
            "Differences between development and evaluation data",
            "a validation run on data other than the training data",
        ),
        (
            "17",
            "Methods: ethics",
            "Ethics committee approval and consent, or waiver",
            "an ethics approval record (OncoLens's demo data are simulated; a clinic must add its own)",
        ),
        (
            "18a",
            "Open science",
            "Funding and the funders' role",
            "a funding statement (not recorded)",
        ),
        (
            "18b",
            "Open science",
            "Conflicts of interest",
            "a declaration of interests (not recorded)",
        ),
        (
            "18c",
            "Open science",
            "Where the protocol can be read, or that none was prepared",
            "a protocol (not recorded)",
        ),
        (
            "18d",
            "Open science",
            "Registration, or that the study was not registered",
            "a registry entry (not recorded)",
        ),
        (
            "18e",
            "Open science",
            "Availability of the study data",
            "the data source named in the card",
        ),
        (
            "18f",
            "Open science",
            "Availability of the analytical code",
            "the code version that trained and runs the model",
        ),
        (
            "19",
            "Patient and public involvement",
            "Patient and public involvement, or a statement of none",
            "a record of patient and public involvement (not recorded)",
        ),
        (
            "20a",
            "Results: participants",
            "Flow of participants, with and without the outcome, follow-up",
            "the card's patients and events and the store's follow-up",
        ),
        (
            "20b",
            "Results: participants",
            "Characteristics overall and by source: dates, predictors, treatments, events, missing data",
            "the store's clinic and the card's options received",
        ),
        (
            "20c",
            "Results: participants",
            "For evaluation, predictor distributions compared with development data",
            "a validation run on other data, with its predictor distributions",
        ),
        (
            "21",
            "Results: numbers",
            "Participants and outcome events in each analysis",
            "the card's training patients and events",
        ),
        (
            "22",
            "Results: model",
            "The full model (formula, code, object) for third-party use, and access limits",
            "the card's weights file, format and hash",
        ),
        (
            "23a",
            "Results: performance",
            "Performance with confidence intervals, including key subgroups; plots",
            "the card's cross-validated metrics with their spread",
        ),
        (
            "23b",
            "Results: performance",
            "Heterogeneity of performance across clusters, if examined",
            "performance by site (the subgroup audit)",
        ),
        (
            "24",
            "Results: updating",
            "Results of any model updating",
            "the card's calibration, and any recalibrated model",
        ),
        (
            "25",
            "Discussion",
            "Interpretation, including fairness, in context",
            "the card's caveats",
        ),
        (
            "26",
            "Discussion",
            "Limitations: sample, overfitting, missing data; their effect",
            "the card's caveats",
        ),
        (
            "27a",
            "Discussion: usability",
            "How poor or missing input data are handled in use",
            "the card's missing-values rule and scope check",
        ),
        (
            "27b",
            "Discussion: usability",
            "User interaction with inputs or outputs, and expertise needed",
            "the card's intended users and decision rule",
        ),
        (
            "27c",
            "Discussion",
            "Next steps: applicability and generalisability",
            "the card's out-of-scope list",
        ),
    ),
)

CLAIM_ITEMS = _items(
    CLAIM,
    (
        (
            "1",
            "Title / abstract",
            "Identify the AI method and its category (e.g. deep learning)",
            "the card's title and architecture",
        ),
        (
            "2",
            "Title / abstract",
            "Structured summary of design, methods, results, conclusions",
            "a written abstract",
        ),
        (
            "3",
            "Introduction",
            "Scientific and clinical background, intended use and clinical role of the AI",
            "the card's intended use",
        ),
        (
            "4",
            "Introduction",
            "Study objectives and hypotheses",
            "the card's intended use and metrics",
        ),
        ("5", "Methods: design", "Prospective or retrospective", "the card's evaluation data"),
        (
            "6",
            "Methods: design",
            "Study goal: model creation, feasibility, non-inferiority...",
            "the card's training and evaluation data",
        ),
        ("7", "Methods: data", "Data sources", "the card's training data source"),
        (
            "8",
            "Methods: data",
            "Eligibility criteria: how, where and when cases were identified",
            "the card's modalities and body parts",
        ),
        ("9", "Methods: data", "Data pre-processing steps", "the card's architecture input"),
        (
            "10",
            "Methods: data",
            "Selection of data subsets, if any",
            "the card's training, validation and test splits",
        ),
        (
            "11",
            "Methods: data",
            "Definitions of data elements, with common data elements",
            "the card's labels",
        ),
        (
            "12",
            "Methods: data",
            "De-identification methods",
            "the de-identification applied on ingest (DICOM PS3.15 Basic Profile)",
        ),
        (
            "13",
            "Methods: data",
            "How missing data were handled",
            "a missing-data statement in the card",
        ),
        (
            "14",
            "Methods: ground truth",
            "Definition of the reference standard, replicable",
            "the card's training data source (the generator's labels and lesion masks)",
        ),
        (
            "15",
            "Methods: ground truth",
            "Rationale for the reference standard",
            "a ground-truth rationale in the card (training_data.ground_truth)",
        ),
        (
            "16",
            "Methods: ground truth",
            "Source of annotations; qualifications of annotators",
            "an annotators statement in the card (reporting.annotators)",
        ),
        (
            "17",
            "Methods: ground truth",
            "Annotation tools",
            "the annotation tool in the card (training_data.annotation_tool)",
        ),
        (
            "18",
            "Methods: ground truth",
            "Inter- and intra-rater variability, and how resolved",
            "a rater-variability study (not applicable to generated ground truth)",
        ),
        (
            "19",
            "Methods: partitions",
            "Intended sample size and how it was determined",
            "the card's data sizes",
        ),
        (
            "20",
            "Methods: partitions",
            "How data were assigned to partitions, with proportions",
            "the card's training, validation and test sizes and seeds",
        ),
        (
            "21",
            "Methods: partitions",
            "Level at which partitions are disjoint (image, patient, site)",
            "the card's seeds of each split",
        ),
        (
            "22",
            "Methods: model",
            "Model description: inputs, outputs, layers",
            "the card's architecture",
        ),
        (
            "23",
            "Methods: model",
            "Software libraries, frameworks and packages",
            "the card's training environment and the installed versions",
        ),
        (
            "24",
            "Methods: model",
            "Initialisation of parameters",
            "an initialisation statement in the card's training section",
        ),
        (
            "25",
            "Methods: training",
            "Training details: augmentation, hyperparameters, number of models",
            "the card's training section",
        ),
        (
            "26",
            "Methods: training",
            "Method of selecting the final model",
            "a model-selection rule in the card",
        ),
        ("27", "Methods: training", "Ensembling, if used", "an ensembling statement in the card"),
        ("28", "Methods: evaluation", "Performance metrics", "the card's metrics"),
        (
            "29",
            "Methods: evaluation",
            "Statistical measures of significance and uncertainty",
            "confidence intervals in the card's metrics",
        ),
        (
            "30",
            "Methods: evaluation",
            "Robustness or sensitivity analysis",
            "the card's input guard and known weak spots",
        ),
        (
            "31",
            "Methods: evaluation",
            "Explainability methods and how they were validated",
            "the card's saliency quality",
        ),
        (
            "32",
            "Methods: evaluation",
            "Validation on external data",
            "an evaluation on data from another source (real images)",
        ),
        ("33", "Results: data", "Flow of cases: inclusion and exclusion", "the card's data sizes"),
        (
            "34",
            "Results: data",
            "Demographic and clinical characteristics per partition",
            "class counts per partition",
        ),
        (
            "35",
            "Results: performance",
            "Performance on every partition",
            "the card's metrics on the test set and calibration on held-out sets",
        ),
        (
            "36",
            "Results: performance",
            "Diagnostic accuracy with precision (95 % CI)",
            "AUC with its confidence interval",
        ),
        (
            "37",
            "Results: performance",
            "Failure analysis of misclassified cases",
            "the card's known weak spots",
        ),
        (
            "38",
            "Discussion",
            "Limitations: bias, uncertainty, generalisability",
            "the card's caveats",
        ),
        (
            "39",
            "Discussion",
            "Implications for practice, intended use and clinical role",
            "the card's intended use and out-of-scope list",
        ),
        ("40", "Other", "Registration number and registry", "a registry entry (not recorded)"),
        ("41", "Other", "Where the full protocol can be accessed", "a protocol (not recorded)"),
        ("42", "Other", "Funding and the funders' role", "a funding statement (not recorded)"),
    ),
)

DECIDE_AI_ITEMS = _items(
    DECIDE_AI,
    (
        (
            "I",
            "Title",
            "Identify the AI decision support and an early clinical evaluation",
            "the model's name and version as deployed",
        ),
        (
            "II",
            "Abstract",
            "Intended use, setting, users, findings on safety and human factors",
            "a written abstract of the evaluation",
        ),
        (
            "III",
            "Introduction",
            "The clinical problem, intended use and the AI's place in the pathway",
            "the card's intended use",
        ),
        (
            "IV",
            "Methods: participants",
            "Eligibility of patients (and of the data they contribute)",
            "the card's out-of-scope list",
        ),
        (
            "V",
            "Methods: participants",
            "Eligibility and characteristics of the users",
            "accounts by role in the store",
        ),
        (
            "VI",
            "Methods: AI system",
            "The AI system: version, inputs, outputs, how it was trained",
            "the card's version and weights hash",
        ),
        (
            "VII",
            "Methods: implementation",
            "Setting and integration in the clinical workflow; user training",
            "audit events of the model's use",
        ),
        (
            "VIII",
            "Methods: safety and errors",
            "How errors, malfunctions and harms were identified",
            "a refusal record (input guard) or decision record in the store",
        ),
        (
            "IX",
            "Methods: human factors",
            "How usability and human factors were evaluated",
            "a usability evaluation (not recorded)",
        ),
        (
            "X",
            "Methods: analysis",
            "Statistical methods for the evaluation",
            "a stated analysis of the recorded use (the audit trail and decisions)",
        ),
        (
            "XI",
            "Results: participants",
            "Patients and users included, and their characteristics",
            "audit events naming patients and users",
        ),
        (
            "XII",
            "Results: implementation",
            "User exposure: how often and how long the system was used",
            "audit events of the model's use",
        ),
        (
            "XIII",
            "Results: modifications",
            "Changes to the AI system or its use during the study",
            "model versions seen in the audit trail",
        ),
        (
            "XIV",
            "Results: human-AI agreement",
            "Agreement between users' decisions and the AI, and why they differed",
            "decisions recorded with accept / override",
        ),
        (
            "XV",
            "Results: safety and errors",
            "Errors, malfunctions and harms observed",
            "input-guard refusals and audit events",
        ),
        (
            "XVI",
            "Results: human factors",
            "Usability, learning curves, workload",
            "a usability evaluation (not recorded)",
        ),
        (
            "XVII",
            "Discussion",
            "Support for the intended use; safety; strengths and limitations",
            "the card's caveats",
        ),
    ),
)

BY_CHECKLIST = {TRIPOD_AI: TRIPOD_AI_ITEMS, CLAIM: CLAIM_ITEMS, DECIDE_AI: DECIDE_AI_ITEMS}
