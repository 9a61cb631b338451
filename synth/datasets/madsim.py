"""MAD-Sim (PAD benchmark): `<Class>/train/good/<k>.png`, `test/{good,Burrs,Missing,Stains}`,
`ground_truth/<defect>/<k>_mask.png`; renders may carry alpha, which `load_rgb` composites onto white."""

from __future__ import annotations

from synth.datasets.mvtec import MvtecReader


class MadsimReader(MvtecReader):
    """MAD-Sim: the MVTec AD layout with LEGO-toy classes and RGBA renders."""

    name = "madsim"
    title = "a MAD-Sim"
    layout = ("<Class>/train/good/<k>.png, <Class>/test/{good,Burrs,Missing,Stains}/<k>.png, "
              "<Class>/ground_truth/<defect>/<k>_mask.png")
    default_licence = "see the MAD dataset's terms (PAD, Zhou et al. 2023)"
