"""Encoders and the CMD model, built from parsed arguments."""
from models.cmd import CMD
from models.gru import GRUEncoder
from models.stgcn import STGCNEncoder


def build_encoder(args, layout, persons, dim=None):
    """One encoder for ``layout`` skeletons of ``persons`` bodies; ``dim`` overrides ``args.dim``."""
    dim = args.dim if dim is None else dim
    if args.encoder == 'gru':
        return GRUEncoder(3 * layout.num_joints * persons, args.hidden_size, args.num_layers, dim,
                          mlp=args.mlp, mode=args.gru_mode)
    if args.encoder == 'stgcn':
        return STGCNEncoder(layout, dim=dim, mlp=args.mlp)
    raise ValueError(f'unknown encoder {args.encoder!r}')


def build_cmd(args, layout, persons):
    return CMD(lambda: build_encoder(args, layout, persons), layout, args.modalities, dim=args.dim,
               queue_size=args.queue_size, momentum=args.momentum_key, contrast_t=args.contrast_t,
               topk=args.topk, teacher_t=args.teacher_t, student_t=args.student_t, cmd_weight=args.cmd_weight,
               grouped=getattr(args, 'gru_impl', 'fused') == 'grouped', kernels=getattr(args, 'gru_kernels', 'auto'),
               fp16_operands=getattr(args, 'recurrent_fp16', False), overlap_keys=getattr(args, 'overlap_keys', False))
