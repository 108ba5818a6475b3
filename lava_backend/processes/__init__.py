"""Custom Lava processes of the spiking_deepr Lava backend.

Lava's compiler imports *every* module in this directory when it looks for
ProcessModels, so the modules here import only numpy and lava.

Processes (each module holds the Process and its ProcessModels):

- :mod:`.io`      ``SequenceSource`` (graded real/integer input x[t]) and
  ``StepSink`` (records per-step vectors into a preallocated array, written once).
- :mod:`.alif`    ``ALIF`` adaptive LIF (LSNN) with per-lane sequence resets,
  ``floating_pt`` and bit-accurate ``fixed_pt`` models.
- :mod:`.lstm`    ``LSTM`` (``floating_pt``), torch.nn.LSTM gate order (i, f, g, o).
- :mod:`.readout` ``Readout`` (Norse leaky integrator "li" or "linear"),
  ``floating_pt`` and ``fixed_pt`` models.
- :mod:`.sparse`  ``W @ s`` ProcessModels for Lava's own ``Sparse`` (selected by
  ``LavaGraph.run_cfg`` through ``exception_proc_model_map``).
"""
