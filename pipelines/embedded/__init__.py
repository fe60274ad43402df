"""The embedded default: the in-process stream, its in-memory edges and the demo.

:mod:`~pipelines.embedded.stream` is the worker (poll → driver → publish → commit) over
:mod:`~pipelines.embedded.memory`'s source and sink; :mod:`~pipelines.embedded.live`
holds one engine behind one lock for the API; :mod:`~pipelines.embedded.feed` and
:mod:`~pipelines.embedded.ops` watch the input and serve the ops port;
:mod:`~pipelines.embedded.demo` wires the simulator, the stream and the API together.
"""
