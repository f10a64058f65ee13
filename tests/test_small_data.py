"""The small-data settings as rules of the training set (options/presets.py; docs/protocols.md,
"Small datasets"), what pretraining prints of them, and the same frames for every baseline."""
import dataclasses
import math

import pytest

import pretrain
from evaluation.pretrained import encoder_settings, open_pretrained
from feeder.info import dataset_info
from options.presets import RULES, SMALL, SMALL_DATA_CLIPS, recipe, small_data_rules


@pytest.mark.parametrize('clips', [40, 175, 227, 284, 723, 1020, 4999])
@pytest.mark.parametrize('world_size', [1, 2])
def test_the_rules_follow_the_training_set(clips, world_size):
    median = clips / 20
    values, why = small_data_rules(clips, median, world_size)
    batch, glob = values['batch_size'], values['batch_size'] * world_size
    assert batch == 2 ** round(math.log2(batch)) and batch <= RULES['max_batch']
    assert clips / batch >= RULES['clips_per_batch'] and (batch == RULES['max_batch'] or clips / (2 * batch) < 8)
    assert values['lr'] == pytest.approx(0.05 * batch / 64)
    queue = values['queue_size']
    assert queue % glob == 0 and (queue <= clips * RULES['queue_share'] or queue == glob)
    assert queue + glob > clips * RULES['queue_share'] or queue == glob  # the largest such multiple
    assert values['topk'] == round(queue * RULES['topk_share'])
    steps = clips // glob
    assert RULES['steps'] <= values['epochs'] * steps < RULES['steps'] + steps
    assert values['schedule'] == [round(0.8 * values['epochs'])]
    assert values['momentum_key'] == pytest.approx(min(0.999, max(0.99, 1 - 22.5 / (values['epochs'] * steps))), abs=1e-4)
    assert small_data_rules(clips, median, world_size, epochs=3)[0]['momentum_key'] == 0.99  # a short run
    assert small_data_rules(clips, median, world_size, epochs=3000)[0]['momentum_key'] > 0.99  # a long one
    frames = values['frames']
    assert frames % 4 == 0 and 16 <= frames <= 32 and values['min_crop'] == frames // 2
    assert frames == min(32, max(16, 4 * round(median / 4)))
    assert set(why) == set(values)


def _prepared(tmp_path, clips, median):
    info = dataset_info('ucla')
    return dataclasses.replace(info, sizes={'xview': {'train': clips, 'val': 10}},
                               lengths={'xview': {'train': {'min': 5, 'median': median, 'mean': median, 'max': 90}}})


def test_a_dataset_of_known_size_takes_the_rules_else_the_preset(tmp_path):
    prepared = _prepared(tmp_path, 227, 23)
    values, _ = small_data_rules(227, 23)
    ruled = recipe(prepared, 'gru', benchmark='xview')[0]
    assert {k: ruled[k] for k in values} == values and ruled['hidden_size'] == SMALL['hidden_size']
    unknown = recipe(dataset_info('ucla'), 'gru', benchmark='xview')[0]  # prepared by older code: no sizes
    assert {k: unknown[k] for k in values} == {k: SMALL.get(k, 64) for k in values}  # 64: the published batch
    custom = dataclasses.replace(prepared, kind='custom')
    assert recipe(custom, 'gru', benchmark='xview')[0] == ruled
    large = dataclasses.replace(custom, sizes={'xview': {'train': SMALL_DATA_CLIPS}})
    assert recipe(large, 'gru', benchmark='xview')[0] == recipe('ntu60', 'gru')[0]  # the published recipe


def test_pretraining_prints_the_rules_and_the_command_line_wins(tmp_path, capsys):
    prepared = _prepared(tmp_path, 227, 23)
    args = pretrain.get_pretrain_parser().parse_args(['--dataset', 'ucla', '--protocol', 'xview', '--data-root', 'x',
                                                      '--output-dir', 'y', '--batch-size', '32'])
    settings, _ = pretrain.resolve_settings(args, prepared, 'cpu')
    values, _ = small_data_rules(227, 23, batch_size=32)  # the rest follows the batch given
    assert settings.frames == values['frames'] == 24 and settings.min_crop == 12 and settings.batch_size == 32
    assert settings.queue_size == values['queue_size'] and settings.epochs == values['epochs']
    text = '\n'.join(pretrain.rules_report(settings))
    assert 'frames 24: the median clip length 23' in text and 'queue_size 64:' in text and 'epochs 322:' in text
    assert 'batch_size' not in text  # given on the command line, not a rule's
    assert settings.sources['batch_size'] == 'command line'
    assert settings.sources['min_crop'] == 'small-data rule: half the frames'
    assert settings.sources['hidden_size'] == 'small-data preset' and settings.sources['lr'].startswith('small-data rule')
    assert settings.sources['contrast_t'] == "published recipe (cmd's defaults)" and args.frames is None  # the command line as parsed
    with pytest.raises(AttributeError, match='settings are resolved once and frozen: lr cannot be set'):
        settings.lr = 1.0
    resumed = pretrain.get_pretrain_parser().parse_args(['--dataset', 'ucla', '--protocol', 'xview', '--data-root',
                                                         'x', '--output-dir', 'y'])
    settings, _ = pretrain.resolve_settings(resumed, prepared, 'cpu', recorded={'frames': 32, 'queue_size': 256})
    assert (settings.frames, settings.queue_size) == (32, 256)
    assert settings.sources['frames'] == settings.sources['queue_size'] == 'checkpoint'
    assert not any(line.startswith(('  frames ', '  queue_size ')) for line in pretrain.rules_report(settings))


def test_random_and_raw_baselines_see_the_trained_recipes_frames(tmp_path):
    prepared = _prepared(tmp_path, 227, 23)
    for kind in ('random', 'raw'):
        assert encoder_settings(open_pretrained(kind), prepared, {}, 'xview')['frames'] == 24


def test_a_small_data_row_fixes_what_it_names_and_the_rules_follow_its_batch_and_epochs():
    from models.mamp import MAMP
    from models.transformer import TransformerEncoder
    prepared = _prepared(None, 1020, 34)
    for method, encoder, row, source in (
            ('cmd', 'transformer', TransformerEncoder.SMALL_RECIPE, 'small-data preset (transformer)'),
            ('mamp', None, MAMP.SMALL_RECIPE, 'small-data preset (mamp)')):
        values, why = recipe(prepared, encoder, method, benchmark='xview')
        assert {k: values[k] for k in row} == row and all(why[k] == source for k in row)
        ruled, _ = small_data_rules(1020, 34, batch_size=values['batch_size'], epochs=row['epochs'])
        assert values['schedule'] == ruled['schedule']
        assert values.get('momentum_key', ruled['momentum_key']) == ruled['momentum_key']  # a MoCo method's
        assert ('momentum_key' in values) == (method == 'cmd')  # MAMP has no key encoder to set
        assert (values['frames'], values['min_crop']) == (32, 16) and why['frames'].startswith('small-data rule')
        assert values['encoder'] == 'transformer'
    assert recipe(prepared, 'transformer', 'cmd', benchmark='xview', epochs=7)[0]['epochs'] == 60  # the row's, in
    # the recipe; the command line's 7 wins later (resolve_settings), and the rules follow it:
    assert recipe(prepared, 'transformer', 'cmd', benchmark='xview', epochs=7)[0]['momentum_key'] == \
        small_data_rules(1020, 34, batch_size=64, epochs=7)[0]['momentum_key']
    published = recipe('ntu60', method='mamp')[0]  # large data keeps the published rows
    assert (published['width'], published['epochs'], published['frames']) == (256, 400, 120)
    assert recipe('ntu60', 'transformer', 'cmd')[0]['optimizer'] == 'sgd'


def test_small_data_without_a_method_or_encoder_takes_the_small_data_default():
    from models import SMALL_DEFAULT
    from options.presets import default_choice
    prepared = _prepared(None, 1020, 34)
    args = pretrain.get_pretrain_parser().parse_args(['--dataset', 'ucla', '--protocol', 'xview', '--data-root', 'x',
                                                      '--output-dir', 'y'])
    settings, _ = pretrain.resolve_settings(args, prepared, 'cpu')
    assert (settings.method, settings.encoder) == (SMALL_DEFAULT['method'], SMALL_DEFAULT['encoder'])
    assert settings.sources['method'] == settings.sources['encoder'] == f'small-data default: {SMALL_DEFAULT["why"]}'
    for given, expected in ((['--encoder', 'transformer'], ('cmd', 'transformer')), (['--method', 'mamp'],
                                                                                      ('mamp', 'transformer'))):
        chosen = pretrain.get_pretrain_parser().parse_args(['--dataset', 'ucla', '--protocol', 'xview', '--data-root',
                                                            'x', '--output-dir', 'y'] + given)
        settings, _ = pretrain.resolve_settings(chosen, prepared, 'cpu')
        assert (settings.method, settings.encoder) == expected
        assert 'small-data default' not in settings.sources['method']
    assert default_choice('ntu60') == ('cmd', 'gru', 'published recipe')
    large = dataclasses.replace(prepared, kind='custom', sizes={'xview': {'train': SMALL_DATA_CLIPS}})
    assert default_choice(large, 'xview') == ('cmd', 'gru', 'published recipe')
    assert default_choice(dataclasses.replace(large, sizes={'xview': {'train': 300}}), 'xview')[:2] == (
        SMALL_DEFAULT['method'], SMALL_DEFAULT['encoder'])
    resumed, _ = pretrain.resolve_settings(args, prepared, 'cpu', recorded={'encoder': 'gru'})  # predates methods
    assert resumed.method == 'cmd' and resumed.sources['method'] == 'default'
