#!/usr/bin/env bash
# CMD pretraining with the published recipe: NTU-120 cross-setup. Extra arguments are passed to pretrain.py.
exec "$(dirname "$0")/_pretrain.sh" ntu120 xsetup "$@"
