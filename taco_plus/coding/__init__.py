"""Entropy coding (docs/coding.md): the ``.tacoz`` container (``bitstream``), the bounds-checked rANS coder
(``rans``) and the checkerboard coders (``checkerboard``). The model calls it; it imports nothing of the model."""
