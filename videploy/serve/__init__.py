"""Online serving: a bundle on NVIDIA Triton Inference Server (``videploy serve``).

``protocol`` defines the request / response tensors and checks requests (no Triton needed);
``libpython`` makes Triton's Python-backend stub load this interpreter's own ``libpython``;
``triton`` binds the runtime to a PyTriton server with dynamic batching. Needs the ``serve``
extra: ``pip install 'videploy[serve]'``.
"""
