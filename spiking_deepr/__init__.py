"""spiking_deepr: DEEP R training of sparse recurrent networks for neuromorphic hardware."""
__version__ = "0.1.0"
