"""`oncolens predict` on a 3D series (one answer per series by the 3D model, no slice-by-slice 2D
reads), `oncolens models` (list, show, add a MONAI bundle) and `oncolens demo --volumes`."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dashboard.cli.main import main
from models.training import synthetic as phantoms
from models.training.synthetic_dicom import write_phantom_dicom
from models.volumes.write import SeriesHeader, write_series

pytestmark = pytest.mark.filterwarnings("ignore")


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_predict_names_a_volume_series_once_and_still_reads_2d_images(tmp_path, capsys) -> None:
    header = SeriesHeader(
        "MR",
        "P1",
        "A^B",
        generate_uid(),
        generate_uid(),
        generate_uid(),
        dt.date(2026, 1, 1),
        "BRAIN",
        "MR brain",
        "AX T1",
    )
    values = np.random.default_rng(0).integers(0, 900, (16, 64, 64))
    write_series(
        values,
        tmp_path / "series",
        header,
        origin_lps=(0, 0, 0),
        pixel_spacing=(1, 1),
        slice_spacing=2,
    )
    write_phantom_dicom(
        phantoms.brain_mri(np.random.default_rng(2), True, lesion_diameter_mm=28.0),
        tmp_path / "slice2d.dcm",
        patient_id="P1",
        study_uid=generate_uid(),
        series_uid=generate_uid(),
        sop_instance_uid=generate_uid(),
        study_date="20250301",
    )
    assert main(["predict", str(tmp_path), "--json"]) == 1  # noise: the 3D guard refuses it
    captured = capsys.readouterr()
    volume, image = _lines(captured.out)
    assert volume["series_instance_uid"] == header.series_uid and volume["images"] == 16
    assert volume["model"] == "brain_mets_3d" and volume["label"] is None
    assert "does not look like" in volume["refused"] and volume["lesion"] is None
    assert volume["input_check"]["in_distribution"] is False
    assert Path(volume["file"]) == tmp_path / "series"
    assert image["model"] == "brain_mri" and Path(image["file"]).name == "slice2d.dcm"
    assert "1 of 2" in captured.err and "Traceback" not in captured.err


@pytest.mark.slow
def test_demo_writes_volumes_on_request(tmp_path, capsys) -> None:
    db = tmp_path / "clinic.duckdb"
    args = ["demo", "--patients", "300", "--seed", "7", "--db", str(db), "--images", "0"]
    assert main([*args, "--no-model", "--volumes", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = Path(out["volumes_dir"])
    assert folder == tmp_path / "clinic_volumes" and out["volumes"] >= 2
    manifest = json.loads((folder / "volumes.json").read_text())
    assert len(manifest["series"]) == out["volumes"]
    assert {s["modality"] for s in manifest["series"]} == {"MR", "CT"}


def test_series_prints_each_volume_or_why_not_and_writes_nifti(tmp_path, capsys) -> None:
    import nibabel as nib  # the reference reader of what --nifti wrote

    good = SeriesHeader(
        "CT", "P2", "C^D", generate_uid(), generate_uid(), generate_uid(), dt.date(2026, 1, 2),
        "CHEST", "CT", "axial",
    )  # fmt: skip
    values = np.random.default_rng(1).integers(-1000, 1000, (8, 20, 24))
    write_series(values, tmp_path / "in" / "good", good, origin_lps=(0, 0, 0), pixel_spacing=(1, 1), slice_spacing=3)  # fmt: skip
    gappy = SeriesHeader(*(getattr(good, f) for f in ("modality", "patient_id", "patient_name", "study_uid")), generate_uid(), generate_uid(), good.study_date, "CHEST", "CT", "gappy")  # fmt: skip
    write_series(values, tmp_path / "in" / "gappy", gappy, origin_lps=(0, 0, 0), pixel_spacing=(1, 1), slice_spacing=3, order=[0, 1, 2, 5, 6, 7])  # fmt: skip
    (tmp_path / "in" / "notes.txt").write_text("hello")
    out = tmp_path / "nii"
    assert main(["series", str(tmp_path / "in"), "--json", "--nifti", str(out)]) == 1
    captured = capsys.readouterr()
    lines = {
        line.get("series_instance_uid") or line.get("file"): line for line in _lines(captured.out)
    }
    vol = lines[good.series_uid]
    assert vol["shape"] == [8, 20, 24] and vol["spacing_mm"] == [3.0, 1.0, 1.0]
    img = nib.load(vol["nifti"])
    assert img.shape == (24, 20, 8) and np.asarray(img.dataobj)[5, 4, 3] == values[3, 4, 5]
    assert "2 slices missing" in lines[gappy.series_uid]["error"]
    assert lines[str(tmp_path / "in" / "notes.txt")]["skipped"] == "not a DICOM file"
    assert "1 of 2 series" in captured.err and "Traceback" not in captured.err

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * (8 << 20))
    assert main(["series", str(bomb)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "zip bomb" in err[0]


def test_predict_reads_a_brain_series_with_volume_and_diameter(tmp_path, capsys) -> None:
    # lazy: the 3D fixtures' writer lives beside the models tests
    from models.volumes import phantoms
    from tests.models.volumes.conftest import write_phantom_series

    rng = np.random.default_rng([4242, 3])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
    write_phantom_series(vol, tmp_path / "brain", "MR")
    ct = phantoms.thorax_ct(rng, None, 0.0)
    write_phantom_series(ct, tmp_path / "chest", "CT")
    assert main(["predict", str(tmp_path), "--json"]) == 1  # the CT has no 3D model
    captured = capsys.readouterr()
    by_modality = {r["modality"]: r for r in _lines(captured.out)}
    brain, chest = by_modality["MR"], by_modality["CT"]
    assert brain["kind"] == "volume" and brain["label"] == "lesion" and brain["refused"] is None
    assert brain["lesion"]["volume_ml"] > 0.5
    assert abs(brain["lesion"]["longest_axial_diameter_mm"] - vol.lesion_diameter_mm) <= 6.0
    assert brain["input_check"]["in_distribution"] and brain["model_version"] == "1.2.0"
    assert brain["approval"]["status"]  # the sign-off travels with 3D reads too
    assert (
        chest["error_type"] == "NoModelForVolumeError" and "no 3D model reads CT" in chest["error"]
    )
    assert "1 of 2" in captured.err and "Traceback" not in captured.err

    assert main(["predict", str(tmp_path / "brain")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert "lesion (p " in line and "mL" in line and "longest axial diameter" in line


def test_models_add_registers_a_bundle_and_refuses_one_it_cannot_feed(
    tmp_path, capsys, monkeypatch
) -> None:
    import shutil  # copies of the built-in bundle as the bundles a hospital brings

    from models.volumes import bundle as bundles  # lazy: the folder to copy

    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path / "models"))
    good = tmp_path / "ours"
    shutil.copytree(bundles.BUILTIN_DIR, good)
    assert main(["models", "add", str(good), "--json"]) == 0
    added = json.loads(capsys.readouterr().out.strip())
    assert added["name"] == "ours" and added["contract"]["channels"] == 1 and "card" in added
    assert (tmp_path / "models" / "bundles" / "ours" / "oncolens.json").is_file()
    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert "brain_mets_3d:" in listed and "ours:" in listed and "Dice" in listed

    bad = tmp_path / "brats"
    shutil.copytree(bundles.BUILTIN_DIR, bad)
    meta = json.loads((bad / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["inputs"]["image"]["num_channels"] = 4
    (bad / "configs" / "metadata.json").write_text(json.dumps(meta))
    assert main(["models", "add", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused" in err[0] and "4 input channels" in err[0]
    assert not (tmp_path / "models" / "bundles" / "brats").exists()


def test_the_series_scan_in_worker_processes_equals_one_pass(tmp_path) -> None:
    """``scan_headers`` (predict's series scan, chunks of files in worker processes) finds the
    same series as ``scan_series`` in one pass: same order, members, frames and positions, even
    when a series is split across chunks, with files that are not DICOM among them."""
    # lazy: the module under test and the one-pass reference
    import pydicom.data

    from dashboard.cli.imaging import scan_headers
    from models.inference.read import iter_dicom_paths  # lazy: as above
    from models.volumes import scan_series  # lazy: as above

    for k, n in enumerate((14, 9)):
        header = SeriesHeader(
            "MR", f"P{k}", "A^B", generate_uid(), generate_uid(), generate_uid(),
            dt.date(2026, 1, 1), "BRAIN", "MR brain", "AX T1",
        )  # fmt: skip
        values = np.random.default_rng(k).integers(0, 900, (n, 32, 32))
        write_series(
            values, tmp_path / f"series{k}", header, origin_lps=(0, 0, 0), pixel_spacing=(1, 1),
            slice_spacing=2,
        )  # fmt: skip
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm", "rtdose_1frame.dcm"):
        (tmp_path / name).write_bytes(Path(pydicom.data.get_testdata_file(name)).read_bytes())
    (tmp_path / "broken.dcm").write_bytes(b"not a DICOM file at all")
    files = list(iter_dicom_paths([tmp_path]))
    infos, owner, _ = scan_series(files)
    assert sum(i.looks_like_volume for i in infos) >= 2
    for workers, chunk in ((2, 5), (2, 3), (1, 4)):
        assert scan_headers(files, workers=workers, chunk=chunk) == (infos, owner)


def test_explain_a_series_writes_its_3d_map_and_refuses_noise_with_a_result(
    tmp_path, capsys
) -> None:
    import nibabel as nib  # the NIfTI the command wrote, read back

    # lazy: the 3D fixtures' writer lives beside the models tests
    from models.volumes import phantoms
    from tests.models.volumes.conftest import write_phantom_series

    rng = np.random.default_rng([4242, 5])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 26.0), 26.0)
    brain = write_phantom_series(vol, tmp_path / "brain", "MR")
    nii, png = tmp_path / "out" / "map.nii.gz", tmp_path / "out" / "peak.png"
    args = ["explain", str(brain), "--method", "gradcam", "--json"]
    assert main([*args, "--out-nifti", str(nii), "--out", str(png)]) == 0
    captured = capsys.readouterr()
    (result,) = _lines(captured.out)
    assert result["kind"] == "volume" and result["model"] == "brain_mets_3d"
    assert result["label"] == "lesion" and result["refused"] is None
    assert result["verdict"]["status"] and "target" in result and len(result["peak_voxel"]) == 3
    assert list(nib.load(nii).shape) == result["grid_shape"] and png.stat().st_size > 0
    assert "Traceback" not in captured.err

    noise = phantoms.PhantomVolume(
        np.random.default_rng(3).uniform(0, 900, vol.values.shape).astype(np.float32),
        np.zeros(vol.values.shape, np.uint8), vol.origin_lps, vol.spacing_mm, 0.0,
    )  # fmt: skip
    folder = write_phantom_series(noise, tmp_path / "noise", "MR")
    assert main(["explain", str(folder), "--method", "gradcam", "--json"]) == 1
    captured = capsys.readouterr()
    (refused,) = _lines(captured.out)
    assert "does not look like" in refused["refused"] and "peak_voxel" not in refused
    assert "Traceback" not in captured.err

    assert main(["explain", str(brain), "--method", "occlusion"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not offered for a series" in err[0]


def test_validate_imaging_includes_the_3d_model_and_a_registered_bundle(
    validated_imaging, tmp_path, capsys, monkeypatch
) -> None:
    import shutil  # a copy of the built-in bundle as the bundle a hospital brings

    from models.volumes import bundle as bundles  # lazy: the folder to copy

    # `validate imaging --json` with "ours" registered: run once for this and test_cli_imaging
    builtin, ours = validated_imaging["brain_mets_3d"], validated_imaging["ours"]
    assert builtin["kind"] == ours["kind"] == "volume"
    guard = builtin["guard"]
    assert 0.0 <= guard["auroc"] <= 1.0 and guard["n_in_distribution"] > 0
    assert set(guard["refusal_rate_by_kind"]) >= {"uniform noise", "thorax CT labelled MR"}
    assert guard["refusal_rate_by_kind"]["uniform noise"] == 1.0
    assert "dice" in builtin["segmentation"] and "card" in builtin["segmentation"]["source"]
    assert set(builtin["saliency"]["methods"]) == {"gradcam", "integrated_gradients"}
    for entry in builtin["saliency"]["methods"].values():
        assert entry["verdict"]["status"]
    # the registered bundle: what can be measured for it, and what cannot, said
    assert ours["guard"]["auroc"] is None and "own task" in ours["guard"]["auroc_not_measured"]
    assert ours["guard"]["refusal_rate_out_of_distribution"] == 1.0
    assert "cannot be measured" in ours["segmentation"]["not_measured"]

    # the text report, from a registration of its own: the fewest 2D phantoms the command takes (20),
    # as only the lines are checked here (the figures, at 80, are checked above and in test_cli_imaging)
    monkeypatch.setenv("ONCOLENS_MODELS", str(tmp_path / "models"))
    shutil.copytree(bundles.BUILTIN_DIR, tmp_path / "ours")
    assert main(["models", "add", str(tmp_path / "ours")]) == 0
    capsys.readouterr()
    assert main(["validate", "imaging", "--n", "20"]) == 0
    text = capsys.readouterr().out
    assert "brain_mets_3d (3D, MR" in text and "ours (3D, MR" in text and "saliency gradcam" in text
    assert "mammography: AUC" in text and "brain_mri: AUC" in text and "n=20" in text


def test_predict_seg_writes_the_read_as_dicom_and_refused_series_get_none(tmp_path, capsys) -> None:
    """`predict SERIES --seg DIR`: the SEG (when a lesion was outlined) and the SR of the read,
    readable and pointing at the series; a series the guard refuses writes nothing."""
    # lazy: the 3D fixtures' writer lives beside the models tests
    import pydicom

    from models.volumes import phantoms
    from models.volumes.results import read_volume_report
    from tests.models.volumes.conftest import write_phantom_series

    rng = np.random.default_rng([4242, 5])
    vol = phantoms.brain_mr(rng, phantoms.brain_lesion(rng, 28.0), 28.0)
    write_phantom_series(vol, tmp_path / "in" / "brain", "MR")
    noise = SeriesHeader(
        "MR", "P2", "A^B", generate_uid(), generate_uid(), generate_uid(), dt.date(2026, 1, 1),
        "BRAIN", "MR brain", "AX T1",
    )  # fmt: skip
    write_series(
        np.random.default_rng(1).integers(0, 900, (16, 64, 64)), tmp_path / "in" / "noise", noise,
        origin_lps=(0, 0, 0), pixel_spacing=(1, 1), slice_spacing=2,
    )  # fmt: skip
    out = tmp_path / "results"
    code = main(["predict", str(tmp_path / "in"), "--seg", str(out), "--json"])
    assert code == 1  # the noise series is refused
    lines = {r["series_instance_uid"]: r for r in _lines(capsys.readouterr().out)}
    refused = lines[noise.series_uid]
    assert refused["refused"] and "seg_files" not in refused
    assert not (out / noise.series_uid).exists()
    (brain,) = [r for uid, r in lines.items() if uid != noise.series_uid]
    files = {Path(f).name: Path(f) for f in brain["seg_files"]}
    assert "seg_error" not in brain and "sr.dcm" in files
    sr = pydicom.dcmread(files["sr.dcm"])
    groups = read_volume_report(sr)["groups"]
    assert len(groups) == max(1, len(brain["lesions"]))
    if brain["lesions"]:  # whatever the weights found, the SEG and SR say the same
        seg = pydicom.dcmread(files["seg.dcm"])
        assert seg.Modality == "SEG" and len(seg.SegmentSequence) == len(brain["lesions"])
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == brain["series_instance_uid"]
        assert [g["measurements"]["Volume"][0] for g in groups] == [
            pytest.approx(m["volume_ml"], abs=1e-3) for m in brain["lesions"]
        ]
