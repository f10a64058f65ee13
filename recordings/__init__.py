"""Long recordings to timelines of actions (``timeline.py``, docs/protocols.md, "Timelines"): a
recording read with its persons tracked (:mod:`.read`), cut into windows prepared as training clips
were (:mod:`.windows`), scored by a trained classifier, and turned into per-frame scores and
segments (:mod:`.segments`); the PKU-MMD detection run (:mod:`.detect`) and the live mode
(:mod:`.follow`)."""
