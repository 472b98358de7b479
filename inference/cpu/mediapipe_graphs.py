"""One lock for building and closing MediaPipe graphs in this process.

MediaPipe's legacy solutions (face detection, pose) build a calculator graph and its TFLite
interpreter when constructed. Two threads doing so at once (the faces step making its detectors
while the pose step loads its model) were seen to hang the process for good, with no thread
holding the interpreter busy. Construction and closing take this lock; running a graph does not
(each thread keeps its own graph)."""

from __future__ import annotations

import threading

GRAPHS = threading.Lock()
