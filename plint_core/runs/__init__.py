"""Long jobs (embedding fits, fine-tuning runs) off the calling process.

- :mod:`.tasks`: what a job is, in a form a worker process can run from scratch;
- :mod:`.executor`: the seam: :class:`~.executor.Executor`, :class:`~.executor.Handle`;
- :mod:`.local`: a first-in, first-out queue of worker processes on this machine;
- :mod:`.ray_executor`: tasks on a Ray cluster, for more than one machine;
- :mod:`.select`: which of the two, from ``PLINT_EXECUTOR``.
"""
