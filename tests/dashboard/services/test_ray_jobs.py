"""dashboard.services.ray_jobs on a local Ray cluster of 2 CPUs: ``--engine ray`` reads and the
worklist refresh give exactly what the local run gives; the store is written by the driver alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from analytics import store
from analytics.worklist import stored as worklist_store
from dashboard.cli.main import main
from models.inference import batch
from models.inference.read import iter_dicom_paths
from sample_data.demo_imaging import write_demo_images

ray = pytest.importorskip("ray")
ray_jobs = pytest.importorskip("dashboard.services.ray_jobs")

pytestmark = pytest.mark.filterwarnings("ignore")
TIMING_KEYS = ("latency_ms", "inference_ms")


@pytest.fixture(scope="module")
def local_ray():
    """One local cluster for the module (starting one takes seconds): 2 CPUs, no dashboard."""
    with ray_jobs.cluster(workers=2):
        yield


@pytest.fixture(scope="module")
def images(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray_images")
    db = Path(shutil.copy(demo_db, root / "clinic.duckdb"))
    write_demo_images(db, root / "images", patients=3, seed=4)
    good = next(iter_dicom_paths([root / "images"]))
    ds = pydicom.dcmread(good)
    ds.PixelData = np.zeros((ds.Rows, ds.Columns), dtype=np.uint16).tobytes()
    ds.save_as(root / "images" / "blank.dcm")
    (root / "images" / "random.dcm").write_bytes(np.random.default_rng(1).bytes(3000))
    return root / "images"


def _plain(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in results]


def test_ray_reads_equal_the_local_reads(local_ray, images: Path) -> None:
    files = list(iter_dicom_paths([images]))
    local = list(batch.predict_files(files, workers=1))
    on_ray = list(ray_jobs.predict_files(files, chunk=4))
    assert _plain(on_ray) == _plain(local)
    assert any("label" in r for r in local) and sum("error" in r for r in local) == 2


def test_predict_engine_ray_from_the_command_line(local_ray, images: Path, capsys) -> None:
    code = main(["predict", str(images), "--json", "--engine", "ray"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert code == 1  # two bad files: non-zero, the others still read
    local = list(batch.predict_files(list(iter_dicom_paths([images])), workers=1))
    # the command adds each read's ethics-board sign-off (issue 22), which the library read has not
    read = [line for line in lines if "error" not in line]
    assert read and all("status" in line["approval"] for line in read)
    assert _plain([{k: v for k, v in line.items() if k != "approval"} for line in lines]) == _plain(
        local
    )


def test_predict_engine_ray_prints_what_the_local_command_prints(
    local_ray, images: Path, capsys
) -> None:
    """The local command parses each file once (scan and 2D read in one pass, issue 23); on Ray
    the scan runs first and the actors read: the same lines, exit status and summary."""
    runs = []
    for extra in (["--engine", "ray"], ["--workers", "2"]):
        code = main(["predict", str(images), "--json", *extra])
        captured = capsys.readouterr()
        lines = [json.loads(x) for x in captured.out.splitlines() if x.strip()]
        runs.append((code, _plain(lines), captured.err))
    assert runs[0] == runs[1] and runs[0][1]


def test_address_without_engine_ray_is_refused(images: Path, capsys) -> None:
    assert main(["predict", str(images), "--address", "auto"]) == 1
    assert "--engine ray" in capsys.readouterr().err


def _entries(db: Path) -> list[tuple]:
    with store.open_store(db, read_only=True) as con:
        cols = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = "
                "'worklist_entry' AND column_name <> 'computed_at' ORDER BY ordinal_position"
            ).fetchall()
        ]
        return con.execute(
            f"SELECT {', '.join(cols)} FROM worklist_entry ORDER BY rank"  # noqa: S608 - catalogue names
        ).fetchall()


def test_worklist_refresh_on_ray_equals_the_local_refresh(
    local_ray, demo_db: Path, tmp_path: Path
) -> None:
    local_db = Path(shutil.copy(demo_db, tmp_path / "local.duckdb"))
    ray_db = Path(shutil.copy(demo_db, tmp_path / "ray.duckdb"))
    clinic = worklist_store.clinic_model(local_db)
    local = worklist_store.refresh_store(local_db, clinic)
    run_on_ray = ray_jobs.risk_map(ray_db)
    jobs_sent: list[int] = []

    def counted(jobs, *args):
        jobs_sent.append(len(jobs))
        return run_on_ray(jobs, *args)

    on_ray = worklist_store.refresh_store(
        ray_db, worklist_store.clinic_model(ray_db), risk_map=counted
    )
    assert jobs_sent and jobs_sent[0] >= 1  # the risks were computed by Ray tasks
    assert local.entries == on_ray.entries > 0
    assert _entries(local_db) == _entries(ray_db)
    with store.open_store(ray_db, read_only=True) as con:
        risks = con.execute("SELECT count(risk_6m) FROM worklist_entry").fetchone()[0]
    assert risks > 0  # forecast risks were compared, not only empty columns
