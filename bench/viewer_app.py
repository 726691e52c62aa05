"""The viewer benchmark's page (``bench/bench_viewer.py`` serves it): the demo volume, nothing else."""

from bench.bench_viewer import demo_volume
from dashboard.components.viewer import Overlay, volume_viewer

phantom = demo_volume()  # drawn once per process, as the Imaging page's (resources.demo_volume)
volume_viewer(
    phantom.volume,
    phantom.affine,
    overlays=[Overlay("Lesion (truth)", phantom.lesion, color=(86, 180, 233))],
    key="bench",
    modality="MR",
    start_slice=phantom.lesion_slice,
    height=480,
)
