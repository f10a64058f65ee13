#!/usr/bin/env bash
# CMD pretraining with the published recipe: NTU-60 cross-subject. Extra arguments are passed to pretrain.py.
exec "$(dirname "$0")/_pretrain.sh" ntu60 xsub "$@"
