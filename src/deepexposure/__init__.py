"""deepexposure: learned local exposure retouching with white-box recipes.

Segment a photo's 64x64 thumbnail, let an agent pick one exposure per segment,
re-expose the full-resolution original and fuse the results (DeepExposure, Yu et al. 2018);
or apply a learned sequence of white-box filters (Exposure, Hu et al. 2018).
"""

__version__ = "0.1.0"
