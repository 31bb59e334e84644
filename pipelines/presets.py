"""Training presets: the recipe and lengths a dataset trains with unless flags say otherwise.

``train_and_export --preset=auto`` (the default) takes the dataset's preset when there is
one, else ``recipe`` (the same recipe, lengths from the flags); any flag given on the command line wins over the preset's value. The
preset's name and values land in ``flags.json`` with the rest of the configuration.

How the values were chosen (validation split only, never test): see
``docs/benchmarks.md``, section "Training recipe". ``plain`` is the recipe every run used
before (constant Adam rate, last epoch kept), kept for comparison and old run folders.
"""

__all__ = ["PRESETS", "RECIPE_KEYS", "apply", "resolve"]

RECIPE_KEYS = ("lr_schedule", "clipnorm", "weight_decay", "keep_best")

# Cosine decay of the rate within each pruning phase (and over QAT), the fixed-support
# epoch with the best validation accuracy kept, gradients clipped to norm 5.
_RECIPE = {"lr_schedule": "cosine", "clipnorm": 5.0, "weight_decay": 0.0,
           "keep_best": True}

PRESETS = {
    "plain": {"lr_schedule": "constant", "clipnorm": None, "weight_decay": 0.0,
              "keep_best": False},
    "recipe": dict(_RECIPE),
    # imu_gravity: chosen on har6 validation (sweep tier 5, docs/benchmarks.md "Recipe
    # trials on har6"): FastGRNN h24's int8 validation accuracy +2.64 ± 2.72 points,
    # paired over 5 seeds.
    # sparse: for sparse (three-phase) models only, training on train + validation with
    # the last epoch kept, chosen leaving validation subjects out (docs/benchmarks.md,
    # "Training on the validation subjects too"): FastGRNN-LSQ h32r4-8s50 +1.60 macro-F1
    # points on held-out subjects (standard error 0.57, 8 seeds); dense FastGRNN h24 did
    # not gain (−0.52 ± 1.61), so dense runs keep the best epoch.
    "har6": dict(_RECIPE, epochs=45, qat_epochs=8, imu_frontend="imu_gravity",
                 sparse={"train_on_val": True, "keep_best": False}),
    "har2": dict(_RECIPE, epochs=45, qat_epochs=8),
    "fsdd": dict(_RECIPE, epochs=45, qat_epochs=8),
}


def resolve(preset, dataset):
  """``(name, values)`` of ``preset`` (``"auto"``: the dataset's own, else ``recipe``).

  Raises:
    ValueError: an unknown preset name.
  """
  if preset == "auto":
    preset = dataset if dataset in PRESETS else "recipe"
  if preset not in PRESETS:
    raise ValueError(f"--preset must be 'auto' or one of {sorted(PRESETS)}, got "
                     f"{preset!r}")
  return preset, dict(PRESETS[preset])


def apply(preset, dataset, flag_values, given, sparse=False):
  """The settings a run uses: the preset's, overridden by the flags given explicitly.

  Args:
    preset: ``"auto"`` or a name in ``PRESETS``.
    dataset: the dataset name (``auto`` picks its preset).
    flag_values: ``{key: flag value}`` for every key a preset may set (the flags'
      defaults fill what the preset leaves out).
    given: keys whose flags were given on the command line.
    sparse: the run prunes (sparsity > 0): a preset's ``sparse`` values apply, as one
      choice: a flag given for any of them sets it aside whole.

  Returns:
    ``(preset name, {key: value})``; a ``clipnorm`` of 0 becomes None (no clipping).
  """
  name, values = resolve(preset, dataset)
  overlay = values.pop("sparse", {})
  if sparse and not set(overlay) & set(given):
    values.update(overlay)
  for key, value in flag_values.items():
    if key not in values or key in given:
      values[key] = value
  if "clipnorm" in values:
    values["clipnorm"] = values["clipnorm"] or None
  return name, values
