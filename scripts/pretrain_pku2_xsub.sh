#!/usr/bin/env bash
# CMD pretraining with the published recipe: PKU-MMD II cross-subject. Extra arguments are passed to pretrain.py.
exec "$(dirname "$0")/_pretrain.sh" pku2 xsub "$@"
