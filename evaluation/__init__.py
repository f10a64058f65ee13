"""Evaluation of pretrained encoders: the shared set-up of the evaluation scripts
(:mod:`evaluation.common`), linear and fine-tuning loops (:mod:`evaluation.classifier`), features
and kNN (:mod:`evaluation.features`, :mod:`evaluation.knn`), t-SNE pictures and results files."""
