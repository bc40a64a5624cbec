"""The language layer: prompt expansion and video re-captioning.

world_parse.py    read a short prompt in the world's vocabulary into a partial scene
expand.py         prompt expansion: offline world expander, OpenAI-compatible LLM expander
caption.py        re-caption a manifest's clips through an OpenAI-compatible vision endpoint
openai_client.py  a standard-library client for OpenAI-compatible chat endpoints
"""

from kinema.language.expand import ExpanderKind, Expansion, load_expander

__all__ = ["ExpanderKind", "Expansion", "load_expander"]
