"""Thin adapters to training frameworks, imported lazily (each needs its framework installed).

* ``from shld.integrations.lightning import ShldCallback`` — Lightning ``Callback``.
* ``from shld.integrations.huggingface import ShldTrainerCallback`` — ``transformers.TrainerCallback``.
"""
