"""The sign-in page imports no model library (issue 23): the landing on a cold server waited seconds
for SciPy, torch and the like, which only the pages behind the sign-in need (they are imported in the
background once the form is drawn, ``resources.warm_up``)."""

from __future__ import annotations

import subprocess
import sys

from tests.dashboard.app_pages.test_pages import ROOT

# what dashboard/app.py imports before the sign-in form is drawn
SIGN_IN_MODULES = ("dashboard.resources", "dashboard.session.auth", "dashboard.session.state")
HEAVY = ("scipy", "torch", "sklearn", "xgboost", "shap", "lifelines", "pydicom", "onnxruntime")


def test_the_sign_in_page_loads_no_model_library() -> None:
    code = (
        f"import sys\nfor m in {SIGN_IN_MODULES!r}: __import__(m)\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == ""
