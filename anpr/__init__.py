"""anpr: frames in, plate reads out; UK plate rules; hotlists; journeys.

May import storage only (never ffmpeg or ONVIF).
"""


class AnprError(Exception):
    """Root of the errors this package raises."""
