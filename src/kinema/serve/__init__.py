"""The web studio (Gradio) and its limits.

generator.py           the request dataclass and the Generator protocol the studio serves
pipeline_generator.py  kinema.pipeline.Pipeline as a Generator
limits.py              StudioLimits and the server-side checks
studio.py              form -> checked request, one generation at a time, result files
app.py                 the Gradio page and `launch` (imports gradio lazily)
"""

from kinema.serve.generator import GenerationRequest, GenerationResult, Generator, GeneratorInfo
from kinema.serve.limits import LimitError, StudioLimits
from kinema.serve.studio import Studio, StudioForm, StudioResult

__all__ = [
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorInfo",
    "LimitError",
    "Studio",
    "StudioForm",
    "StudioLimits",
    "StudioResult",
]
