"""dragoman: real-time two-way speech translation.

This is the hand-written shared package. The generated protobuf modules
(`dragoman.v1`, `dragoman.stt.v1`, ...) live apart in `gen/python/dragoman`
and join this package through its path, so generated and hand-written code
never share a folder.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
