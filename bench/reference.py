"""Published numbers that reports print beside ours (Ronneberger et al. 2015, Table 1).

Source: the paper (MICCAI 2015, arXiv:1505.04597) as summarised in ../shared/reference/
unet-paper-facts.md. The ISBI 2012 numbers are on the challenge's secret *test* labels, scored by
the organisers (best of 10 thresholds, warping / Rand / pixel error); ours are on held-out
*training* sections, so the comparison shows the scale, not a ranking.
"""

from __future__ import annotations

# ISBI 2012 EM segmentation, ranking of 6 March 2015 (Table 1): warping, Rand, pixel error.
ISBI2012_TABLE1 = [
    ("human values", 0.000005, 0.0021, 0.0010),
    ("u-net", 0.000353, 0.0382, 0.0611),
    ("DIVE-SCI", 0.000355, 0.0305, 0.0584),
    ("IDSIA (Ciresan et al., NIPS 2012)", 0.000420, 0.0504, 0.0613),
    ("DIVE", 0.000430, 0.0545, 0.0582),
    ("IDSIA-SCI", 0.000653, 0.0189, 0.1027),
]

CITATION = "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015."
