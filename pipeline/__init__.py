"""reel: archival video restoration with faces restored by latent search in a generative prior.

The generated facial detail is invented by the prior, not recovered from the footage.
Importing this package has no side effects and imports no heavy dependency (torch, av, cv2, ray):
each stage imports what it needs inside the module that needs it.
"""

__version__ = "0.1.0"

# Said in every report and log that shows restored faces.
INVENTED_DETAIL_NOTICE = (
    "Restored faces are plausible inventions of a generative prior: they match the footage when "
    "downscaled, but their fine detail is not recovered information about the person filmed."
)
