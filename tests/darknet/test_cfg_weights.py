"""darknet.cfg parsing/resolution errors and the .weights container."""

import numpy as np
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.darknet.cfg import count_params, parse_cfg_text, resolve
from ppdet_lite.darknet.weights import read_weights, write_weights

NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
CONV = ("[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride={s}\npad=1\n"
        "activation=leaky\n")


def _layers(text):
    return resolve(parse_cfg_text(text, "t.cfg"), path="t.cfg")


def test_shapes_routes_groups_and_counts():
    text = (NET + CONV.format(f=8, s=2) + "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
            + CONV.format(f=4, s=1) + "[route]\nlayers=-1,0\n" + "[maxpool]\nsize=2\nstride=2\n"
            + "[upsample]\nstride=2\n" + "[shortcut]\nfrom=-3\nactivation=linear\n")
    lay = _layers(text)
    assert [l.shape for l in lay] == [(8, 32, 32), (4, 32, 32), (4, 32, 32), (12, 32, 32),
                                      (12, 16, 16), (12, 32, 32), (12, 32, 32)]
    assert lay[3].inputs == [2, 0] and lay[6].inputs == [5, 3]
    assert lay[1].attrs == dict(groups=2, group_id=1)
    # 8·3·9 + 2·8, 4·4·9 + 2·4; with BN mean/var: + 2·8 + 2·4
    assert count_params(lay) == 216 + 16 + 144 + 8
    assert count_params(lay, trainable=False) == 216 + 32 + 144 + 16


@pytest.mark.parametrize("text,needle", [
    ("[convolutional]\nfilters=3\n", "starts with a [net]"),
    (NET + "[local]\nfilters=3\n", "t.cfg:5: layer 0 [local]: layer type [local] is not supported"),
    (NET + CONV.format(f=8, s=1) + "[route]\nlayers=3\n", "layer 1 [route]: refers to layer 3"),
    (NET + CONV.format(f=8, s=1) + "[yolo]\nmask=0\nanchors=1,2\nclasses=2\n",
     "set filters=7 in the [convolutional] before it"),
    (NET + CONV.format(f=8, s=1).replace("leaky", "elu"), "activation=elu is not supported"),
    (NET + CONV.format(f=8, s=1).replace("size=3", "size=x"), "size='x' is not a valid int"),
])
def test_errors_name_layer_and_line(text, needle):
    with pytest.raises(ConfigError) as e:
        _layers(text)
    assert needle in str(e.value)


@pytest.mark.parametrize("version,header", [((0, 2, 5), 20), ((0, 1, 0), 16)])
def test_weights_header_versions(tmp_path, version, header):
    path = str(tmp_path / "w.weights")
    blobs = [np.arange(5, dtype="float32"), np.ones((2, 3), "float32")]
    assert write_weights(path, blobs, seen=123456789012 if header == 20 else 7,
                         version=version) == 11
    raw = open(path, "rb").read()
    assert len(raw) == header + 11 * 4
    wf = read_weights(path)
    assert (wf.major, wf.minor, wf.revision) == version and wf.header_bytes == header
    assert wf.seen == (123456789012 if header == 20 else 7)
    np.testing.assert_array_equal(wf.data, np.concatenate([b.ravel() for b in blobs]))


def test_weights_not_darknet(tmp_path):
    path = tmp_path / "x.weights"
    path.write_bytes(b"\xff" * 30)
    with pytest.raises(ConfigError, match="not a darknet .weights file"):
        read_weights(str(path))
