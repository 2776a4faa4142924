#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Checks the pool picture end to end: the demo writes pool.json and pool.svg, bufpool-map
# renders the JSON to the same SVG, every range of the dump is a rect with a <title> naming
# its state, offset and size, every bar has an offset axis labelled with its ends, and
# rsvg-convert turns the SVG into a PNG of its size in which every state's colour appears.
# Usage: picture.py DEMO_EXE MAP_TOOL_EXE OUTPUT_DIR
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
import zlib

COLOURS = {"free": "dddddd", "used": "4e79a7", "guarded": "f28e2b", "parked": "e15759",
           "pending": "b07aa1"}


def fail(message):
    print("picture: " + message, file=sys.stderr)
    sys.exit(1)


def png_pixels(path):
    """(width, height, set of (r, g, b)) of an 8-bit RGB or RGBA PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(path + " is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    if depth != 8 or colour_type not in (2, 6):
        fail("unexpected PNG format: depth %d, colour type %d" % (depth, colour_type))
    channels = 3 if colour_type == 2 else 4
    stride = width * channels
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    colours = set()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 255
        for x in range(0, stride, channels):
            colours.add("%02x%02x%02x" % (line[x], line[x + 1], line[x + 2]))
        previous = line
    return width, height, colours


def check_titles_and_axes(svg, dump):
    """Every range has a titled rect; every region and pending span has a labelled axis."""
    ns = "{http://www.w3.org/2000/svg}"
    root = ElementTree.fromstring(svg)
    titles = {rect.find(ns + "title").text for rect in root.iter(ns + "rect")
              if rect.find(ns + "title") is not None}
    bars = dump["regions"] + dump["pending"]
    for region in dump["regions"]:
        for r in region["ranges"]:
            prefix = "%s: offset %d, %d bytes" % (r["state"], r["offset"], r["size"])
            if not any(t.startswith(prefix) for t in titles):
                fail("no rect titled '%s...'" % prefix)
    for span in dump["pending"]:
        prefix = "pending: offset %d, %d bytes" % (span["offset"], span["size"])
        if not any(t.startswith(prefix) for t in titles):
            fail("no rect titled '%s...'" % prefix)
    axes = [g for g in root.iter(ns + "g") if g.get("class") == "axis"]
    if len(axes) != len(bars):
        fail("%d offset axes for %d bars" % (len(axes), len(bars)))
    for axis, bar in zip(axes, bars):
        labels = [text.text for text in axis.iter(ns + "text")]
        ends = [str(bar["offset"]), str(bar["offset"] + bar["size"])]
        if labels[:1] + labels[-1:] != ends or len(list(axis.iter(ns + "line"))) != len(labels) + 1:
            fail("axis labels %s do not run from %s to %s" % (labels, ends[0], ends[1]))
    ranges = sum(len(region["ranges"]) for region in dump["regions"])
    return ranges, len(axes)


def main():
    demo, tool, out = sys.argv[1:4]
    subprocess.run([demo, out], check=True, stdout=subprocess.DEVNULL)
    svg_path, json_path = os.path.join(out, "pool.svg"), os.path.join(out, "pool.json")
    tool_svg = os.path.join(out, "from-json.svg")
    subprocess.run([tool, json_path, "-o", tool_svg], check=True)
    svg = open(svg_path).read()
    if open(tool_svg).read() != svg:
        fail("bufpool-map rendered the JSON dump differently from dump_svg()")
    ranges, axes = check_titles_and_axes(svg, json.load(open(json_path)))
    converter = shutil.which("rsvg-convert")
    if converter is None:
        fail("rsvg-convert not found (apt-get install librsvg2-bin; scripts/bootstrap does)")
    png = os.path.join(out, "pool.png")
    subprocess.run([converter, svg_path, "-o", png], check=True)
    size = re.search(r'<svg[^>]* width="(\d+)" height="(\d+)"', svg)
    width, height, colours = png_pixels(png)
    if (width, height) != (int(size.group(1)), int(size.group(2))):
        fail("PNG is %dx%d, the SVG says %sx%s" % (width, height, size.group(1), size.group(2)))
    missing = [name for name, rgb in COLOURS.items() if rgb not in colours]
    if missing:
        fail("colours missing from the picture: " + ", ".join(missing))
    print("picture: %dx%d PNG with every state's colour, %d titled ranges, %d axes (%s)"
          % (width, height, ranges, axes, png))


main()
