"""Helpers of ``scripts/build_corpus.py``, in small modules.

* :mod:`.rcc` -- Qt binary resource (``.rcc``) reader, pure Python;
* :mod:`.pzl` -- Jigzo puzzle reader;
* :mod:`.debs`, :mod:`.licences` -- Debian packages and their copyright files;
* :mod:`.imaging`, :mod:`.photo` -- image helpers and the photograph tests;
* :mod:`.dedup` -- near-duplicate detection (difference hash);
* :mod:`.candidates`, :mod:`.crops` -- candidate images and native-resolution crops;
* :mod:`.gcompris`, :mod:`.extra` -- the sources added by issue 9;
* :mod:`.contact` -- contact sheets for reviewing sources by eye.
"""
