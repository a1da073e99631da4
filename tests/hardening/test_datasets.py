"""COCO and VOC annotation errors through train, eval and anchor_cluster: a broken file is refused
in one line naming the file and the entry; skipped entries (duplicate ids, annotations of unknown
images, invalid boxes, missing images) are counted and reported, and the run goes on."""
import copy
import json
import os

import pytest

from .conftest import tiny_yaml, write_yaml
from .helpers import base_args, refused, run_tool

TOOLS = ["train", "eval", "anchor_cluster"]
FIELDS = ["image", "gt_bbox", "gt_class", "is_crowd"]


def _set(path, value):
    """A mutation: ``path`` a tuple of keys/indices into the json, its last item set to ``value``."""
    def edit(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(*path):
    def edit(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


def _every(kind, field, value):
    def edit(d):
        for i, entry in enumerate(d[kind]):
            entry[field] = value(i) if callable(value) else value
    return edit


def _append(kind, entry):
    def edit(d):
        d[kind].append(entry(d) if callable(entry) else entry)
    return edit


# name -> (edit of the json dict, or raw bytes of the file; words the error line must hold)
COCO_ERRORS = {
    "ann_no_category_id": (_delete("annotations", 0, "category_id"), ["annotations[0]", "category_id"]),
    "ann_no_image_id": (_delete("annotations", 0, "image_id"), ["annotations[0]", "image_id"]),
    "image_no_file_name": (_delete("images", 0, "file_name"), ["images[0]", "file_name"]),
    "image_no_id": (_delete("images", 0, "id"), ["images[0]", "'id'"]),
    "category_no_id": (_delete("categories", 0, "id"), ["categories[0]", "'id'"]),
    "bbox_3_numbers": (_set(("annotations", 0, "bbox"), [1, 2, 3]), ["annotations[0]", "bbox"]),
    "bbox_5_numbers": (_set(("annotations", 0, "bbox"), [1, 2, 3, 4, 5]), ["annotations[0]", "bbox"]),
    "bbox_strings": (_set(("annotations", 0, "bbox"), ["1", "2", "3", "4"]), ["annotations[0]", "bbox"]),
    "bbox_null": (_set(("annotations", 0, "bbox"), None), ["annotations[0]", "bbox"]),
    "bbox_dict": (_set(("annotations", 0, "bbox"), {"x": 1}), ["annotations[0]", "bbox"]),
    "string_image_id": (_set(("images", 0, "id"), "1"), ["images[0]", "'1'"]),
    "string_ann_image_id": (_set(("annotations", 0, "image_id"), "1"), ["annotations[0]", "image_id"]),
    "string_category_id": (_set(("annotations", 0, "category_id"), "2"), ["annotations[0]", "category_id"]),
    "float_image_id": (_set(("images", 0, "id"), 1.5), ["images[0]", "1.5"]),
    "unknown_category": (_set(("annotations", 0, "category_id"), 99), ["99", "categories"]),
    "no_categories": (_delete("categories"), ["categories"]),
    "images_not_list": (_set(("images",), {"id": 1}), ["'images'", "list"]),
    "annotations_not_list": (_set(("annotations",), 5), ["'annotations'", "list"]),
    "categories_not_list": (_set(("categories",), "abc"), ["'categories'", "list"]),
    "ann_not_object": (_set(("annotations", 0), 5), ["annotations[0]"]),
    "image_not_object": (_set(("images", 0), "000001.jpg"), ["images[0]"]),
    "no_images_key": (_delete("images"), ["'images'"]),
    "every_box_invalid": (_every("annotations", "bbox", [5, 5, 0, 3]), ["invalid boxes"]),
    "every_box_negative": (_every("annotations", "bbox", [10, 10, -5, -5]), ["invalid boxes"]),
    "every_box_outside": (_every("annotations", "bbox", [500, 500, 10, 10]), ["invalid boxes"]),
    "every_area_zero": (_every("annotations", "area", 0), ["invalid boxes"]),
    "every_image_missing": (_every("images", "file_name", lambda i: f"gone_{i}.jpg"), ["file_name", "image_dir"]),
    "every_size_negative": (_every("images", "width", -1), ["valid size"]),
    "json_syntax": (b'{"images": [', ["not a valid COCO json"]),
    "json_empty": (b"", ["not a valid COCO json"]),
    "json_non_utf8": (b'{"images": [], "x": "\xff\xfe"}', ["not a valid COCO json"]),
    "json_list": (b"[1, 2]", ["'images'"]),
    "json_nan_boxes": (b'{"images": [{"id": 1, "file_name": "000001.jpg", "width": 64, "height": 64}], '
                       b'"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 1, 2, 3]}], '
                       b'"categories": [{"id": 1, "name": "a"}]}', ["invalid boxes"]),
}

# accepted, with the count reported: (edit, words in the log)
COCO_REPORTED = {
    "duplicate_image_ids": (_append("images", lambda d: dict(d["images"][0])), ["1 duplicate image ids"]),
    "orphan_annotations": (_append("annotations", lambda d: dict(d["annotations"][0], id=999, image_id=999)),
                           ["1 annotations of image ids not in 'images'"]),
    "one_box_invalid": (_set(("annotations", 0, "bbox"), [5, 5, 0, 3]), ["1 invalid boxes"]),
    "one_image_missing": (_set(("images", 0, "file_name"), "gone.jpg"), ["skipped 1 images"]),
}


def coco_config(ws, tmp_path, edit, **extra) -> str:
    """A config whose Train/EvalDataset are a COCODataSet on the workspace's train images and its
    json after ``edit`` (a function of the dict, or the file's bytes)."""
    d = tmp_path / "coco"
    d.mkdir()
    os.symlink(os.path.join(ws.data, "train"), d / "train")
    if isinstance(edit, bytes):
        (d / "ann.json").write_bytes(edit)
    else:
        data = copy.deepcopy(ws.coco)
        edit(data)
        (d / "ann.json").write_text(json.dumps(data))
    section = {"name": "COCODataSet", "dataset_dir": str(d), "image_dir": "train", "anno_path": "ann.json"}
    doc = tiny_yaml(ws.root, TrainDataset=dict(section, data_fields=FIELDS), EvalDataset=section,
                    weights=ws.weights, save_dir=str(tmp_path / "output"), max_iters=1, **extra)
    return write_yaml(str(tmp_path / "coco.yml"), doc)


@pytest.mark.parametrize("name", list(COCO_ERRORS))
@pytest.mark.parametrize("tool", TOOLS)
def test_coco_error(tool, name, ws, tmp_path):
    edit, words = COCO_ERRORS[name]
    path = coco_config(ws, tmp_path, edit)
    refused(run_tool(tool, base_args(tool, ws, tmp_path, config=path)), "ann.json", *words)


@pytest.mark.parametrize("name", list(COCO_REPORTED))
@pytest.mark.parametrize("tool", TOOLS)
def test_coco_skips_are_counted(tool, name, ws, tmp_path):
    edit, words = COCO_REPORTED[name]
    res = run_tool(tool, base_args(tool, ws, tmp_path, config=coco_config(ws, tmp_path, edit)))
    assert res.code == 0 and "Traceback" not in res.err, f"[exit={res.code}] {res.err[-2000:]}"
    assert all(w in res.out for w in words), f"[unreported] want {words}\n{res.out[-2000:]}"


def test_coco_missing_annotation_file(ws, tmp_path):
    path = coco_config(ws, tmp_path, b"{}")
    os.remove(tmp_path / "coco" / "ann.json")
    refused(run_tool("train", base_args("train", ws, tmp_path, config=path)), "ann.json")


def test_coco_missing_image_dir(ws, tmp_path):
    path = coco_config(ws, tmp_path, lambda d: None)
    os.remove(tmp_path / "coco" / "train")
    refused(run_tool("train", base_args("train", ws, tmp_path, config=path)), "train", "image_dir")


# ------------------------------------------------------------------ VOC
XML = """<annotation><filename>{name}</filename><size><width>64</width><height>64</height><depth>3</depth></size>
<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>10</ymin><xmax>40</xmax>
<ymax>40</ymax></bndbox></object></annotation>"""


def voc_config(ws, tmp_path, edit=None) -> str:
    """A VOC copy of the workspace's train images (label_list.txt, train.txt, Annotations/*.xml),
    after ``edit(dir)``; metric VOC."""
    d = tmp_path / "voc"
    (d / "Annotations").mkdir(parents=True)
    os.symlink(os.path.join(ws.data, "train"), d / "JPEGImages")
    (d / "label_list.txt").write_text("circle\nrectangle\ntriangle\n")
    lines = []
    for i, im in enumerate(ws.coco["images"]):
        stem = os.path.splitext(im["file_name"])[0]
        (d / "Annotations" / f"{stem}.xml").write_text(XML.format(name=im["file_name"], cls="circle", x1=5 + 4 * i))
        lines.append(f"JPEGImages/{im['file_name']} Annotations/{stem}.xml")
    (d / "train.txt").write_text("\n".join(lines) + "\n")
    if edit:
        edit(d)
    section = {"name": "VOCDataSet", "dataset_dir": str(d), "anno_path": "train.txt", "label_list": "label_list.txt"}
    fields = ["image", "gt_bbox", "gt_class", "difficult"]
    doc = tiny_yaml(ws.root, TrainDataset=dict(section, data_fields=fields),
                    EvalDataset=dict(section, data_fields=fields), metric="VOC", weights=ws.weights,
                    save_dir=str(tmp_path / "output"), max_iters=1)
    return write_yaml(str(tmp_path / "voc.yml"), doc)


def _xml(text):
    return lambda d: (d / "Annotations" / "000001.xml").write_text(text)


def _file(name, data):
    return lambda d: (d / name).write_bytes(data)


VOC_ERRORS = {
    "no_label_list": (lambda d: os.remove(d / "label_list.txt"), ["label_list.txt"]),
    "xml_malformed": (_xml("<annotation><size>"), ["000001.xml"]),
    "xml_unknown_class": (_xml(XML.format(name="a", cls="hexagon", x1=5)), ["000001.xml", "'hexagon'"]),
    "xml_bbox_text": (_xml(XML.format(name="a", cls="circle", x1="abc")), ["000001.xml", "abc"]),
    "xml_no_size": (_xml("<annotation><object><name>circle</name></object></annotation>"), ["000001.xml", "size"]),
    "xml_empty": (_xml(""), ["000001.xml"]),
    "xml_non_utf8": (lambda d: (d / "Annotations" / "000001.xml").write_bytes(b"<annotation>\xff\xfe</annotation>"),
                     ["000001.xml"]),
    "list_one_field": (_file("train.txt", b"JPEGImages/000001.jpg\n"), ["train.txt", "image xml"]),
    "list_missing": (lambda d: os.remove(d / "train.txt"), ["train.txt"]),
    "list_empty": (_file("train.txt", b""), ["train.txt"]),
    "list_non_utf8": (_file("train.txt", b"JPEGImages/\xff\xfe.jpg Annotations/000001.xml\n"), ["train.txt"]),
    "label_list_non_utf8": (_file("label_list.txt", b"circle\n\xff\xfe\n"), ["label_list.txt"]),
    "every_xml_missing": (lambda d: [os.remove(p) for p in (d / "Annotations").iterdir()], ["train.txt"]),
    "every_box_invalid": (lambda d: [p.write_text(XML.format(name="a", cls="circle", x1=50))
                                     for p in (d / "Annotations").iterdir()], ["train.txt", "box"]),
}


@pytest.mark.parametrize("name", list(VOC_ERRORS))
@pytest.mark.parametrize("tool", TOOLS)
def test_voc_error(tool, name, ws, tmp_path):
    edit, words = VOC_ERRORS[name]
    path = voc_config(ws, tmp_path, edit)
    refused(run_tool(tool, base_args(tool, ws, tmp_path, config=path)), *words)


@pytest.mark.parametrize("tool", TOOLS)
def test_voc_one_xml_missing_is_counted(tool, ws, tmp_path):
    path = voc_config(ws, tmp_path, lambda d: os.remove(d / "Annotations" / "000001.xml"))
    res = run_tool(tool, base_args(tool, ws, tmp_path, config=path) + (["-n", "3"] if tool == "anchor_cluster" else []))
    assert res.code == 0 and "Traceback" not in res.err, f"[exit={res.code}] {res.err[-2000:]}"
    assert "skipped 1 entries" in res.out, f"[unreported] {res.out[-2000:]}"
