"""``oncolens ingest``, ``deidentify``, ``predict``, ``series``, ``models`` and ``explain``: DICOM files
and the AI read (2D images and, through MONAI bundles, 3D series).

``ingest --dicomweb`` (a PACS rather than files) is handed to ``hospital``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dashboard.cli import hospital as cli_hospital
from dashboard.cli import oversight as cli_lifecycle
from dashboard.cli import progress as cli_progress
from dashboard.cli.common import (
    EXIT_FAILED,
    CliError,
    SubParsers,
    actor,
    add_command,
    check_engine,
    db_arg,
    db_path,
    engine_args,
    print_json_lines,
    say,
    whole_number,
)
from models.inference.loader import ModelLoader


def add_subparsers(subparsers: SubParsers) -> None:
    p = add_command(
        subparsers,
        "ingest",
        "read DICOM files or folders (or a PACS) into the store and run the AI read",
        cmd_ingest,
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH")
    db_arg(p)
    p.add_argument(
        "--workers",
        type=whole_number,
        metavar="N",
        help="processes that read the files before the store is opened (default: one per core)",
    )
    cli_hospital.add_ingest_arguments(p)

    p = add_command(
        subparsers,
        "deidentify",
        "de-identify DICOM files (PS3.15 Annex E Basic Profile) into a folder",
        cmd_deidentify,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder: <pseudonym>/<study>/<instance>.dcm",
    )
    p.add_argument(
        "--key-file",
        type=Path,
        default=None,
        metavar="F",
        help="key for UIDs and pseudonyms (hex; created if missing; default: the store's "
        "<name>_deid.key beside --db, so UIDs match its ingested files)",
    )
    db_arg(p)
    p.add_argument("--json", action="store_true", help="one JSON object per file, with the report")

    p = add_command(
        subparsers,
        "predict",
        "run an imaging model on DICOM files (folders are walked)",
        cmd_predict,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument(
        "--model",
        metavar="NAME",
        help="force a model (mammography, brain_mri); default: by modality",
    )
    db_arg(p)  # the store whose ethics-board sign-off the output carries (`approval`)
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument(
        "--seg",
        type=Path,
        metavar="DIR",
        help="series read in 3D: write the AI read as DICOM (multi-frame SEG and TID 1500 SR) "
        "into DIR/<SeriesInstanceUID>/",
    )
    p.add_argument(
        "--store-to-pacs",
        action="store_true",
        help="series read in 3D: send the SEG and SR to the configured PACS (STOW-RS; "
        "$ONCOLENS_PACS_URL and credentials), audited in --db",
    )
    engine_args(p)

    p = add_command(
        subparsers,
        "series",
        "read DICOM series (folders, files, zips) into 3D volumes: geometry, or why not",
        cmd_series,
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument(
        "--nifti",
        type=Path,
        metavar="DIR",
        help="also write each volume as DIR/<SeriesInstanceUID>.nii.gz (RAS, float32)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per series")

    p = add_command(
        subparsers,
        "models",
        "3D models (MONAI bundles): list them, show one's card, or add your own",
        cmd_models,
    )
    p.add_argument("action", choices=["list", "show", "add"])
    p.add_argument(
        "target",
        nargs="?",
        metavar="NAME|BUNDLE_DIR",
        help="show: a model's name; add: a bundle folder",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per model")

    p = add_command(
        subparsers,
        "explain",
        "saliency map of the AI read of one DICOM file, or of each series in a folder or zip (3D)",
        cmd_explain,
    )
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument(
        "--method", choices=["integrated_gradients", "gradcam", "occlusion"], required=True
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE.png",
        help="the heat map over the image (PNG); a series: the axial slice through the map's peak",
    )
    p.add_argument(
        "--out-nifti",
        type=Path,
        metavar="FILE.nii.gz",
        help="a series: the 3D map on the model's grid (NIfTI, RAS affine, float32)",
    )
    p.add_argument(
        "--out-npy",
        type=Path,
        metavar="FILE.npy",
        help="the raw signed attribution map at the image's rows x columns",
    )
    p.add_argument(
        "--target",
        metavar="CLASS",
        help="class to explain, index or name (default: the predicted class)",
    )
    p.add_argument(
        "--model",
        metavar="NAME",
        help="force a model (mammography, brain_mri); default: by modality",
    )
    p.add_argument(
        "--baseline",
        choices=["black", "blurred", "mean"],
        help="integrated_gradients: baseline image (default mean)",
    )
    p.add_argument(
        "--steps",
        type=whole_number,
        help="integrated_gradients: gradient evaluations of the first pass (default 32, panels of "
        "8, refined up to 128 where the completeness gap is above 5 %%; a series: 8, at most 32)",
    )
    p.add_argument("--json", action="store_true")


ONE_PASS = True
"""``predict`` parses each file once (scan and 2D read in one pass); False: the scan, then the
reads (what Ray and a 3D ``--model`` use; tests compare the two on the same folder)."""


def cmd_predict(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.read import iter_dicom_paths

    # lazy: the 2D tasks' names, to tell a 3D model named by --model from a 2D one
    from models.inference.tasks import TASKS

    failed = 0
    files = list(iter_dicom_paths(args.paths))
    # the PACS is checked before any series is read: a wrong address fails in a second, not after
    # minutes of 3D reads
    client = _pacs_client() if args.store_to_pacs else None
    # one parse per file (issue 23): the scan and the 2D reads in one pass of the worker processes.
    # Not for Ray (its actors read; the scan stays local), nor for a --model that is not a 2D
    # model's name (the 2D reads' model then depends on whether the scan finds volumes)
    one_pass = ONE_PASS and args.engine != "ray" and (args.model is None or args.model in TASKS)
    lost: set[str] = set()  # files whose reader crashed, placed in their series by their header
    if one_pass:
        infos, owner, reads_2d = scan_and_read_files(files, args.model, args.workers, lost)
    else:
        infos, owner = scan_headers(files, args.workers if args.engine != "ray" else None)
    volumes, in_volumes, kept = _volume_series(infos, owner, args.model, lost)
    signed_off: dict[tuple, dict] = {}  # one store lookup per model version, not per file
    for result in volumes:
        if "error" not in result:  # the 3D model's sign-off, as for the 2D reads (issue 22)
            version = (result["model"], result["model_version"])
            if version not in signed_off:
                signed_off[version] = cli_lifecycle.approval_of(db_path(args), *version)
            result, _ = cli_lifecycle.withhold(
                result,
                signed_off[version],
                ("file", "series_instance_uid", "model", "model_version"),
            )
        series = kept.get(result["series_instance_uid"])
        if "error" not in result and series is not None and (args.seg or client is not None):
            result = _results_out(result, series, args, client)
        failed += (
            "error" in result
            or bool(result.get("refused"))
            or "seg_error" in result
            or "send_error" in result
        )
        if args.json:
            cli_progress.echo(json.dumps(result))
        else:
            _say_volume(result)
    files = [f for f in files if str(f) not in in_volumes]
    seen = len(files) + len(volumes)  # a volume series is one input
    if one_pass:
        check_engine(args)  # where read_many checks it: after the volumes, as before
        results: Iterator[dict] = (r for r in reads_2d if r["file"] not in in_volumes)
    else:
        model_2d = args.model if args.model is None or args.model in TASKS or not volumes else None
        results = iter(cli_progress.track(read_many(files, model_2d, args), "AI read", len(files)))
    for result in results:
        failed += _say_2d(result, args, signed_off)
    if seen == 0:
        raise CliError("no files found under the given paths")
    if failed:
        say(f"{failed} of {seen} file(s) could not be read by a model (errors or refused inputs)")
        return EXIT_FAILED
    return 0


def _say_2d(result: dict, args: argparse.Namespace, signed_off: dict[tuple, dict]) -> bool:
    """Print one 2D read (``--json``: its JSON line), with its version's sign-off; whether it
    counts as a failed input (an error, a refusal, or output withheld)."""
    if "error" not in result:  # the version's sign-off; withheld output is an error (issue 22)
        version = (result["model"], result["model_version"])
        if version not in signed_off:
            signed_off[version] = cli_lifecycle.approval_of(db_path(args), *version)
        result, _ = cli_lifecycle.withhold(
            result, signed_off[version], ("file", "model", "model_version")
        )
    if args.json:
        cli_progress.echo(json.dumps(result))
    elif "error" in result:
        cli_progress.echo(f"{result['file']}: error: {result['error']}")
    elif result.get("refused"):
        cli_progress.echo(f"{result['file']}: refused: {result['refused']}")
    else:
        probs = ", ".join(f"{k} {v:.2f}" for k, v in result["probabilities"].items())
        lesion = result["lesion"]
        size = (
            f"; lesion {lesion['longest_diameter_mm']:.1f} mm"
            if lesion and "longest_diameter_mm" in lesion
            else ""
        )
        between = result.get("uncertain_between")
        finding = (
            f"uncertain between {between[0]['label']} and {between[1]['label']}"
            if between
            else result["label"]
        )
        cli_progress.echo(
            f"{result['file']}: {finding} ({probs}){size} [{result['model']} "
            f"{result['model_version']}, {result['latency_ms']:.0f} ms]"
        )
        for spot in result.get("weak_spots") or ():
            cli_progress.echo(f"  known weak spot: {spot}")
    if not args.json and "error" not in result:
        note = (result.get("approval") or {}).get("message")
        if note:  # not approved by the ethics board, or its sign-off could not be checked
            cli_progress.echo(f"  NOTE: {note}")
    # a refusal is a result (label null, `refused` says why) but counts as a failed input
    return "error" in result or bool(result.get("refused"))


SPOOL_BYTES = 64 << 20
"""2D results held in memory while the one pass runs; past this they go to a temporary file."""


def scan_and_read_files(
    files: list[Path], model: str | None, workers: int | None = None, lost: set[str] | None = None
) -> tuple[list, dict[str, str], Iterator[dict]]:
    """``scan_headers(files)``'s series and file -> series map, and the 2D read of every file
    (``read_files``' entries, in input order), from one parse of each file in one process per
    core (``models.inference.batch.scan_and_read``).

    The reads come back as the pass goes, but ``predict`` prints every volume's read before any
    2D read (as it always has), and which files are slices of a volume is known only once the
    last chunk is in: the 2D results are held until then, as JSON lines in a spooled temporary
    file (memory up to ``SPOOL_BYTES``, then disk), and replayed. The caller drops the reads of
    files that turn out to be in a volume.

    ``lost`` (filled when given): the files whose worker crashed, whose headers are then read
    here (headers only: no decoder runs) and put in their series, so that a volume missing such
    a slice is refused with the reason rather than read one slice short (a crashed end slice
    leaves no gap in the others' positions).
    """
    # lazy: the worker pool only for `predict`
    import tempfile

    from models.inference.batch import CHUNK, map_files, scan_and_read  # lazy: as above

    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8")
    parts = map_files(scan_and_read, files, model, workers=workers, chunk=CHUNK)
    crashed: list[str] = []
    for part in cli_progress.track(parts, "AI read", -(-len(files) // CHUNK)):
        if isinstance(part, dict):  # a file that crashed its worker (read alone, it still did)
            spool.write(json.dumps(part) + "\n")
            crashed.append(str(part["file"]))
            continue
        owner.update(part.owner)
        for info in part.infos:
            seen = merged.get(info.series_instance_uid)
            merged[info.series_instance_uid] = info if seen is None else seen.merged(info)
        for result in part.results:
            if result is not None:
                spool.write(json.dumps(result) + "\n")

    if crashed and lost is not None:
        # lazy: the series scan of the crashed files' headers only where a worker crashed
        from models.volumes import scan_series

        infos, crashed_owner, _ = scan_series([Path(f) for f in crashed])
        for info in infos:
            seen = merged.get(info.series_instance_uid)
            merged[info.series_instance_uid] = info if seen is None else seen.merged(info)
        owner.update(crashed_owner)
        lost.update(crashed_owner)

    def replay() -> Iterator[dict]:
        with spool:
            spool.seek(0)
            for line in spool:
                yield json.loads(line)

    return list(merged.values()), owner, replay()


def _scan_chunk(paths: list[Path], load: object, requested: str | None) -> list:
    """``scan_series`` of one chunk of files, in a worker process of ``scan_headers``."""
    # lazy: only `predict` needs the series scan
    from models.volumes import scan_series

    return [scan_series(paths)]


def scan_headers(
    files: list[Path], workers: int | None = None, chunk: int | None = None
) -> tuple[list, dict[str, str]]:
    """``scan_series(files)``'s series (in the same order, with the same members and counts) and
    its file -> series UID map, the headers parsed by one process per core.

    Why: the scan parses every file's header (about 1-2 ms each) before any image is read, in
    one process while the other cores wait: 2.2 CPU-seconds of a 1,000-file ``predict`` (issue
    23). Chunks of files go to worker processes (``models.inference.batch.map_files``, forked
    after the imports) and their series are merged in input order; a series split across chunks
    adds up its files, frames and positioned images exactly as one pass would.
    """
    # lazy: the worker pool only for `predict`
    from models.inference.batch import CHUNK, map_files

    merged: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for part in map_files(_scan_chunk, files, workers=workers, chunk=chunk or 4 * CHUNK):
        if isinstance(part, dict):  # a file whose header crashed its worker: read as 2D, which
            continue  # reports it (ReaderCrashed) like any file a decoder cannot survive
        infos, part_owner, _ = part
        owner.update(part_owner)
        for info in infos:
            seen = merged.get(info.series_instance_uid)
            merged[info.series_instance_uid] = info if seen is None else seen.merged(info)
    return list(merged.values()), owner


def _pacs_client():
    """The configured PACS's client (``models.pacs``), checked before any series is read."""
    # lazy: only --store-to-pacs talks to a PACS
    from models import pacs

    try:
        config = pacs.PacsConfig.resolve()
        client = pacs.connect(config)
        pacs.check_connection(client)
    except pacs.PacsError as exc:
        raise CliError(str(exc)) from exc
    return client


def _results_out(result: dict, series, args: argparse.Namespace, client) -> dict:
    """Write (``--seg``) and send (``--store-to-pacs``) one series' SEG and SR; the result says
    where they went, or why not (``seg_error``, ``send_error``) without failing the other series."""
    # lazy: highdicom and the PACS client only with --seg / --store-to-pacs
    from dashboard.services.pacs_ingest import send_volume_results
    from models import pacs  # lazy: as above
    from models.paths import UnsafePathError, inside  # lazy: as above
    from models.volumes.results import results_for_series  # lazy: as above

    if result.get("refused") or result.get("label") is None:
        return {**result, "seg_error": "no read to write: the input guard refused this series"}
    out = dict(result)
    if args.seg is not None:
        try:
            objects = results_for_series(series)
            folder = inside(args.seg, _safe_name(series.series_instance_uid))
            folder.mkdir(parents=True, exist_ok=True)
            written = []
            for name, ds in (("seg.dcm", objects.segmentation), ("sr.dcm", objects.report)):
                if ds is not None:
                    ds.save_as(folder / name, enforce_file_format=True)
                    written.append(str(folder / name))
            out["seg_files"] = written
        # one series' failure is its own: any error of highdicom or pydicom on this series
        # (not only the expected ones) is reported on it and the other series still get theirs
        except Exception as exc:  # noqa: BLE001
            out["seg_error"] = (
                f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, ValueError | OSError | UnsafePathError)
                else str(exc)
            )
    if client is not None:
        try:
            out["sent"] = send_volume_results(
                client,
                series,
                db_path(args),
                pacs_url=str(client.base_url),
                actor=actor(),
            )
        # as above: a failed send (or its audit write) is this series' error, not the run's
        except Exception as exc:  # noqa: BLE001
            out["send_error"] = (
                str(exc)
                if isinstance(exc, pacs.PacsError | ValueError | OSError)
                else f"{type(exc).__name__}: {exc}"
            )
    return out


def _safe_name(uid: str) -> str:
    """A folder name from a UID: digits, letters, '.', '-', '_' kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in uid).strip(".") or "series"


def _volume_series(
    infos: list, owner: dict[str, str], model: str | None, lost: set[str] | None = None
) -> tuple[list[dict], set[str], dict]:
    """Series of a scan (``scan_headers``, ``scan_and_read_files``) that are 3D stacks: one 3D read
    each (``models.volumes.segment``), and their files, which are not read as 2D images.

    Why not read each slice: the 2D models were trained on single 2D images; 64 slice-by-slice
    reads of one brain volume would be 64 answers to a question nobody asked. ``model`` names a
    3D model (built-in or registered) to use for every volume; a 2D model's name leaves the
    volumes to the model of their modality. A series with files in ``lost`` (their reader
    crashed) is an error naming them, never read without them.
    """
    paths: dict[str, list[str]] = {}
    for path, uid in owner.items():
        paths.setdefault(uid, []).append(path)
    infos = [i for i in infos if i.looks_like_volume]
    kept: dict = {}  # the reads themselves (models.volumes.measure.SeriesRead), for --seg
    if not infos:
        return [], set(), kept
    # lazy: only a folder with 3D series needs MONAI, the bundles and PyTorch (a folder of 2D
    # images is read without importing them: seconds of every `predict`'s start, issue 23)
    from models.inference.tasks import TASKS
    from models.volumes import bundle as bundles  # lazy: as above
    from models.volumes import read_volumes  # lazy: as above
    from models.volumes.measure import SeriesRead  # lazy: as above
    from models.volumes.segment import NoModelForVolumeError, read_volume  # lazy: as above

    chosen = model if model is not None and model not in TASKS else None  # a 2D name: by modality
    results = []
    for info in infos:
        uid = info.series_instance_uid
        first = Path(paths[uid][0])
        base = {
            "file": str(first.parent if len(info.files) > 1 else first),
            "series_instance_uid": uid,
            "modality": info.modality,
            "images": info.frames,
            "kind": "volume",
        }
        missing = [p for p in paths[uid] if p in (lost or ())]
        if missing:  # never decoded here: the reader crashed on them once already
            names = ", ".join(Path(p).name for p in missing[:3])
            results.append(
                {
                    **base,
                    "error": f"incomplete series: {len(missing)} of its {len(paths[uid])} "
                    f"images could not be read (the reader process crashed on {names}), so the "
                    "volume would miss their slices; it is not read in 3D",
                    "error_type": "IncompleteSeriesError",
                }
            )
            continue
        read = read_volumes(paths[uid])
        if read.failures or not read.volumes:
            error = read.failures[0].error if read.failures else "no volume could be assembled"
            results.append({**base, "error": str(error), "error_type": "VolumeError"})
            continue
        volume = read.volumes[0]
        try:
            bundle = bundles.bundle_for(volume.modality, chosen)
            read = read_volume(volume, bundle)
            results.append({**base, **read.to_json()})
            kept[uid] = SeriesRead(uid, tuple(paths[uid]), volume, read, bundle.sha256)
        except (NoModelForVolumeError, bundles.BundleError) as exc:
            results.append({**base, "error": str(exc), "error_type": type(exc).__name__})
    return results, {p for info in infos for p in paths[info.series_instance_uid]}, kept


def _say_volume(result: dict) -> None:
    """One line for a series' 3D read (text output of ``predict``)."""
    if "error" in result:
        cli_progress.echo(f"{result['file']}: error: {result['error']}")
    elif result.get("refused"):
        cli_progress.echo(f"{result['file']}: refused: {result['refused']}")
    else:
        lesion = result["lesion"]
        size = (
            f"; largest {lesion['volume_ml']:.2f} mL, {lesion['longest_axial_diameter_mm']:.1f} mm "
            f"longest axial diameter ({len(result['lesions'])} lesion(s))"
            if lesion
            else ""
        )
        cli_progress.echo(
            f"{result['file']}: {result['label']} (p {result['probability']:.2f}){size} "
            f"[{result['model']} {result['model_version']}, 3D, {result['latency_ms']:.0f} ms]"
        )
    note = (result.get("approval") or {}).get("message")
    if note and "error" not in result:
        cli_progress.echo(f"  NOTE: {note}")
    for path in result.get("seg_files") or ():
        cli_progress.echo(f"  wrote {path}")
    if result.get("sent"):
        cli_progress.echo(f"  sent SEG and SR to the PACS (study {result['sent']['study_uid']})")
    for key in ("seg_error", "send_error"):
        if result.get(key) and not result.get("refused"):
            cli_progress.echo(f"  {key.replace('_', ' ')}: {result[key]}")


def cmd_models(args: argparse.Namespace) -> int:
    """``models list``: every 3D model and its contract; ``show NAME``: its card; ``add DIR``:
    register a MONAI bundle whose input contract OncoLens meets (else one line saying why)."""
    from models.volumes import bundle as bundles  # lazy: only `models` loads the bundles

    if args.action == "add":
        if not args.target:
            raise CliError("models add needs a bundle folder")
        try:
            added = bundles.register(Path(args.target))
        except bundles.BundleError as exc:
            raise CliError(f"{args.target}: refused: {exc}") from exc
        shown = [added]
        say(f"registered {added.name} in {added.root}")
    elif args.action == "show":
        if not args.target:
            raise CliError("models show needs a model's name (see `oncolens models list`)")
        try:
            shown = [bundles.load_bundle(args.target)]
        except bundles.BundleError as exc:
            raise CliError(f"{args.target}: {exc}") from exc
    else:
        shown = []
        for name in bundles.available_bundles():
            try:
                shown.append(bundles.load_bundle(name))
            except bundles.BundleError as exc:  # a broken registered bundle is said, not fatal
                say(f"{name}: unusable: {exc}")
    for b in shown:
        info = b.summary()
        if args.action == "show" or args.action == "add":
            info["card"] = b.card
        if args.json:
            cli_progress.echo(json.dumps(info))
            continue
        c = b.contract
        metrics = b.card.get("metrics") or {}
        dice = metrics.get("dice") or {}
        figure = (
            f"; Dice {dice['value']:.2f} (95% CI {dice['ci_low']:.2f}-{dice['ci_high']:.2f})"
            if "value" in dice
            else "; no validation figures in its card"
        )
        cli_progress.echo(
            f"{b.name}: {b.title} {b.version} ({'built-in' if b.builtin else 'registered'}) - "
            f"{c.modality}, {c.channels} channel, {'x'.join(f'{v:g}' for v in c.spacing_mm)} mm, "
            f"{c.axcodes}, window {'x'.join(map(str, c.spatial_shape))}{figure}; sha256 {b.sha256[:12]}"
        )
    return 0


def cmd_series(args: argparse.Namespace) -> int:
    """One line per series: the volume's geometry (and its NIfTI file), or why it is not one."""
    from models.paths import inside  # lazy: as below
    from models.volumes import read_volumes  # lazy: only `series` and `predict` read volumes
    from models.volumes.sources import UnsafeArchiveError  # lazy: as above

    try:
        result = read_volumes(args.paths)
    except (UnsafeArchiveError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if not result.volumes and not result.failures:
        raise CliError("no DICOM series found under the given paths")
    for vol in result.volumes:
        line = vol.to_json()
        if args.nifti is not None:
            # the UID passes a character filter and models.paths.inside (docs/security.md)
            name = "".join(
                ch if ch.isalnum() or ch in "-_." else "_" for ch in vol.series_instance_uid
            )
            args.nifti.mkdir(parents=True, exist_ok=True)
            path = inside(args.nifti, f"{name.strip('.') or 'series'}.nii.gz")
            vol.to_nifti().to_filename(path)
            line["nifti"] = str(path)
        if args.json:
            cli_progress.echo(json.dumps(line))
        else:
            shape = " x ".join(map(str, line["shape"]))
            spacing = " x ".join(f"{v:g}" for v in line["spacing_mm"])
            cli_progress.echo(
                f"{vol.series_instance_uid}: {vol.modality} volume {shape} voxels, {spacing} mm, "
                f"axes {line['axes']}, {line['instances']} instance(s)"
                + (f"; {'; '.join(vol.warnings)}" if vol.warnings else "")
                + (f" -> {line['nifti']}" if "nifti" in line else "")
            )
    for failure in result.failures:
        if args.json:
            cli_progress.echo(json.dumps(failure.to_json()))
        else:
            cli_progress.echo(f"{failure.series_instance_uid}: error: {failure.error}")
    for skipped in result.skipped:  # files that belong to no series: said, not failures
        if args.json:
            cli_progress.echo(json.dumps({"file": skipped.label, "skipped": skipped.reason}))
    if result.skipped and not args.json:
        say(f"{len(result.skipped)} file(s) skipped (not DICOM images, or no series UID)")
    if result.failures:
        say(
            f"{len(result.failures)} of {len(result.failures) + len(result.volumes)} series are not volumes"
        )
        return EXIT_FAILED
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    # lazy: `oncolens --help` and the other commands never load it
    from analytics.imaging.ingest import ingest_files
    from dashboard.services import lifecycle  # lazy: as above (pandas, the governance package)

    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.read import iter_dicom_paths

    if args.dicomweb is not None or args.study:
        return cli_hospital.cmd_ingest_pacs(args, db_path(args), ModelLoader())
    if not args.paths:
        raise CliError("give DICOM files or folders to ingest")
    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be at least 1")
    files = list(iter_dicom_paths(args.paths))
    if not files:
        raise CliError("no files found under the given paths")
    report = ingest_files(
        db_path(args),
        cli_progress.track(files, "reading and AI read", len(files)),
        ModelLoader(),
        actor=actor(),
        workers=args.workers,  # None: one process per core reads before the store is opened
    )
    # the ethics board's sign-off, as `predict` applies it: each read's `approval`; a withheld
    # version's label and measurements left out (the images are filed: not a failure)
    statuses: dict[tuple, dict] = {}
    stored = [lifecycle.signed_off_entry(db_path(args), e, statuses) for e in report.stored]
    volumes = [lifecycle.signed_off_entry(db_path(args), v, statuses) for v in report.volumes]
    print_json_lines([*stored, *volumes, *report.failed])
    withheld = sum("withheld" in e for e in [*stored, *volumes])
    refused = sum(1 for e in report.stored if e.get("refused"))
    read_3d = [v for v in report.volumes if "note" not in v]
    say(
        f"stored {len(report.stored)} image(s) in {db_path(args)}; {len(report.failed)} failed"
        + (
            f"; the input guard refused the AI read of {refused} (stored without a read)"
            if refused
            else ""
        )
        + (
            f"; {len(read_3d)} series read in 3D ({sum(bool(v.get('refused')) for v in read_3d)} "
            f"refused), {len(report.volumes) - len(read_3d)} series without a 3D model"
            if report.volumes
            else ""
        )
        + (
            f"; the AI read of {withheld} withheld (model version not approved by the ethics "
            "board, and approval is required)"
            if withheld
            else ""
        )
    )
    return EXIT_FAILED if report.failed else 0


def cmd_deidentify(args: argparse.Namespace) -> int:
    """De-identify DICOM files into --out (PS3.15 Annex E Basic Profile); originals are left as they are."""
    # lazy: `oncolens --help` and the other commands never load it
    from models.deid import deidentify as deid

    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.read import iter_dicom_paths

    files = list(iter_dicom_paths(args.paths))
    if not files:
        raise CliError("no files found under the given paths")
    if args.out.resolve() in {p.resolve().parent for p in files}:
        raise CliError(
            "--out must not be a folder of the input files (originals are never overwritten)"
        )
    # default: the store's own key, so these files map UIDs exactly as its ingest does; never kept in --out
    key_file = args.key_file or deid.key_path_for_store(db_path(args))
    try:
        key = deid.load_or_create_key(key_file)
    except (deid.DeidentificationError, OSError) as exc:
        raise CliError(f"cannot use the key file {key_file}: {exc}") from exc
    failed = 0
    audited: list[dict] = []
    for result in deid.deidentify_files(
        cli_progress.track(files, "de-identifying", len(files)), args.out, key
    ):
        failed += "error" in result
        if "error" not in result:
            audited.append({"sha256": result["sha256"], "out_sha256": result["out_sha256"]})
        if args.json:
            cli_progress.echo(json.dumps(result))
        elif "error" in result:
            cli_progress.echo(f"{result['file']}: error: {result['error']}")
        else:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(result["counts"].items()))
            cli_progress.echo(f"{result['file']} -> {result['out']} ({counts})")
            for warning in result["warnings"]:
                cli_progress.echo(f"  warning: {warning}")
    _audit_deidentify(args, len(files) - failed, failed, audited)
    say(
        f"{len(files) - failed} of {len(files)} file(s) de-identified into {args.out} (key {key_file}; "
        "the same key maps the same UIDs to the same new UIDs)"
    )
    return EXIT_FAILED if failed else 0


def _audit_deidentify(args: argparse.Namespace, done: int, failed: int, files: list[dict]) -> None:
    """A ``deidentify`` audit event in the store whose key was used (who, how many, the sha256 of
    each input and output; never a value or a path). Without a store (``--key-file`` alone) the run
    is not audited, and the command says so."""
    # lazy: `oncolens --help` and the other commands never load the store
    from analytics.governance import audit

    # lazy: as above
    from analytics.store.errors import StoreError

    db = db_path(args)
    if not db.exists():
        say(f"not audited: no store at {db} (the audit trail lives in a store)")
        return
    try:
        audit.record_event(
            db,
            actor=actor(),
            action="deidentify",
            details={"deidentified": done, "failed": failed, "files": files},
        )
    except StoreError as exc:
        raise CliError(f"the files were written but the run could not be audited: {exc}") from exc


def cmd_explain(args: argparse.Namespace) -> int:
    if args.path.is_dir() or args.path.suffix.lower() == ".zip":
        return _explain_series(args)
    if args.out_nifti:
        raise CliError(
            "--out-nifti is for a series (a folder or zip); a single image has --out-npy"
        )
    # lazy: numpy is imported only when this is used (start-up time)
    import numpy as np

    from models.dicom.reader import (  # lazy: `oncolens --help` and the other commands never load it
        DicomReadError,
        display,
    )

    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.read import NoModelForImageError

    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.registry import ModelUnavailableError

    # lazy: `oncolens --help` and the other commands never load it
    from models.saliency import methods as saliency

    error = None
    try:
        params = saliency.with_params(None, baseline=args.baseline, n_steps=args.steps)
        result, exp, image = saliency.explain_file(
            args.path, ModelLoader(), args.method, args.target, params, args.model
        )
    except FileNotFoundError:
        error = "file not found"
    except IsADirectoryError:
        error = "is a folder (explain takes one DICOM file)"
    except (
        DicomReadError,
        NoModelForImageError,
        ModelUnavailableError,
        saliency.SaliencyError,
    ) as exc:
        error = str(exc)
    if error is not None:
        if args.json:
            print(json.dumps({"file": str(args.path), "error": error}), flush=True)
        raise CliError(f"{args.path}: {error}")
    try:
        if args.out_npy:
            args.out_npy.parent.mkdir(parents=True, exist_ok=True)
            np.save(args.out_npy, exp.attribution)
            result["out_npy"] = str(args.out_npy)
        if args.out:
            # lazy: `oncolens --help` and the other commands never load it
            from dashboard.figures.saliency import write_overlay_png

            # lazy: scipy/scikit-image for the body outline only when a PNG is written
            from models.inference.preprocess import body_mask

            write_overlay_png(
                args.out, display(image), exp.attribution, body=body_mask(image.pixels)
            )
            result["out"] = str(args.out)
    except OSError as exc:
        raise CliError(f"cannot write the output: {exc}") from exc
    if args.json:
        print(json.dumps(result), flush=True)
        return 0
    delta = (
        f", convergence delta {result['convergence_delta']:.3g}"
        if "convergence_delta" in result
        else ""
    )
    print(
        f"{result['file']}: {saliency.METHOD_TITLES[args.method]} of '{result['target']}' "
        f"[{result['model']} {result['model_version']}]: peak at row {exp.peak_rc[0]}, column {exp.peak_rc[1]}; "
        f"{result['latency_ms']:.0f} ms{delta}"
    )
    if not result["verdict"]["trustworthy"]:
        say(
            f"warning: {args.method} {result['verdict']['status']} for this model "
            f"({'; '.join(result['verdict']['reasons'])}; see `oncolens validate saliency`)"
        )
    if result["sanity_check"] == "failed":
        say(
            f"warning: {args.method} failed the model-randomisation sanity check for this model "
            "(see `oncolens validate saliency`): the map may reflect the image more than the model"
        )
    return 0


def _explain_series(args: argparse.Namespace) -> int:
    """``oncolens explain FOLDER|ZIP``: each series' 3D read and its saliency map
    (``models.saliency.volume.explain_series``, as on the Imaging page), one result per series;
    a refused, broken or unreadable series is a result too, and makes the exit status 1."""
    # lazy: numpy, MONAI, the bundles and Captum only when a series is explained
    import numpy as np

    from models.inference.tasks import TASKS  # lazy: as above
    from models.saliency.methods import METHOD_TITLES, SaliencyError  # lazy: as above
    from models.saliency.volume import VolumeParams, explain_series  # lazy: as above
    from models.volumes import bundle as bundles  # lazy: as above
    from models.volumes import read_volumes  # lazy: as above
    from models.volumes.segment import NoModelForVolumeError  # lazy: as above
    from models.volumes.sources import UnsafeArchiveError  # lazy: as above

    if args.target is not None:
        raise CliError("--target is for 2D images; a series' map explains the read's lesion")
    from models.saliency.volume import METHODS_3D  # lazy: as above

    if args.method not in METHODS_3D:
        raise CliError(
            f"{args.method} is not offered for a series (each of its maps would re-read the volume "
            f"hundreds of times); choose {' or '.join(METHODS_3D)}"
        )
    try:
        params = VolumeParams(
            **{k: v for k, v in (("n_steps", args.steps), ("baseline", args.baseline)) if v}
        )
        found = read_volumes([args.path])
    except (SaliencyError, UnsafeArchiveError, ValueError) as exc:
        raise CliError(f"{args.path}: {exc}") from exc
    if not found.volumes and not found.failures:
        raise CliError(
            f"{args.path}: no DICOM series found (explain takes one DICOM file or a series folder)"
        )
    outputs = [o for o in (args.out, args.out_nifti, args.out_npy) if o]
    if outputs and len(found.volumes) != 1:
        raise CliError(
            f"{args.path} holds {len(found.volumes)} volume(s); --out, --out-nifti and --out-npy "
            "need exactly one"
        )
    chosen = args.model if args.model is not None and args.model not in TASKS else None
    failed = 0
    for failure in found.failures:
        failed += 1
        result = {"file": str(args.path), "kind": "volume", **failure.to_json()}
        result["error"] = failure.error
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            say(f"{args.path}: series {failure.series_instance_uid}: error: {failure.error}")
    for volume in found.volumes:
        try:
            bundle = bundles.bundle_for(volume.modality, chosen)
            result, exp = explain_series(volume, bundle, args.method, params)
        except (NoModelForVolumeError, bundles.BundleError, SaliencyError) as exc:
            failed += 1
            error = {"file": str(args.path), "kind": "volume",
                     "series_instance_uid": volume.series_instance_uid,
                     "error": str(exc), "error_type": type(exc).__name__}  # fmt: skip
            if args.json:
                print(json.dumps(error), flush=True)
            else:
                say(f"{args.path}: series {volume.series_instance_uid}: error: {exc}")
            continue
        result = {"file": str(args.path), **result}
        if exp is None:
            failed += 1
        else:
            try:
                if args.out_nifti:
                    args.out_nifti.parent.mkdir(parents=True, exist_ok=True)
                    exp.to_nifti().to_filename(str(args.out_nifti))
                    result["out_nifti"] = str(args.out_nifti)
                if args.out_npy:
                    args.out_npy.parent.mkdir(parents=True, exist_ok=True)
                    np.save(args.out_npy, exp.attribution)
                    result["out_npy"] = str(args.out_npy)
                if args.out:
                    # lazy: the figure helpers only when a PNG is written
                    from dashboard.figures.saliency import write_overlay_png

                    # lazy: the body outline (scikit-image) only when a PNG is written
                    from models.inference.preprocess import body_mask

                    shown, heat = exp.peak_slice()
                    write_overlay_png(args.out, shown, heat, body=body_mask(shown))
                    result["out"] = str(args.out)
                    result["out_slice"] = exp.peak_voxel[0]
            except OSError as exc:
                raise CliError(f"cannot write the output: {exc}") from exc
        if args.json:
            print(json.dumps(result), flush=True)
        elif exp is None:
            print(f"{args.path}: refused: {result['refused']}")
        else:
            where = "inside" if exp.peak_in_region else "outside"
            print(
                f"{args.path}: {METHOD_TITLES[args.method]} of {result['label']} "
                f"[{result['model']} {result['model_version']}, 3D]: peak at RAS "
                f"{', '.join(f'{v:.0f}' for v in exp.peak_mm)} mm, {where} the explained region; "
                f"{exp.latency_ms:.0f} ms"
            )
        verdict = result["verdict"]
        if exp is not None and not verdict["trustworthy"]:
            say(
                f"warning: {args.method} {verdict['status']} for {result['model']} "
                f"({'; '.join(verdict['reasons'])}; see `oncolens validate imaging`)"
            )
    return EXIT_FAILED if failed else 0


def read_many(files: list[Path], model: str | None, args: argparse.Namespace) -> Iterator[dict]:
    """``predict_file``'s result for every file, in order, on the engine the options name (Ray is
    imported only for ``--engine ray``, so every other command starts as fast as before)."""
    check_engine(args)
    if args.engine == "ray":
        # lazy: Ray (and its start-up) only for --engine ray
        from dashboard.services import ray_jobs

        return ray_jobs.predict_files(files, model, address=args.address, workers=args.workers)
    # lazy: `oncolens --help` and the other commands never load it
    from models.inference.batch import predict_files

    return predict_files(files, model, workers=args.workers)
