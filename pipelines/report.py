"""The run report: ``report.json`` for machines, ``report.md`` with plots for people."""

import numpy as np

from tf_fastgrnn import fileio

__all__ = ["confusion_matrix", "macro_f1", "plot_confusion", "plot_history", "write"]


def confusion_matrix(y_true, y_pred, num_classes):
  """Counts ``[true, predicted]``."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
  return cm


def macro_f1(cm):
  """Unweighted mean of per-class F1 from a confusion matrix (0 for an absent class)."""
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  denom = cm.sum(0) + cm.sum(1)
  f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
  return float(f1.mean())


def _figure():
  return fileio.pyplot()


def plot_confusion(cm, labels, path, title):
  plt = _figure()
  if plt is None:
    return False
  fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(labels), 1.0 + 0.6 * len(labels)))
  ax.imshow(cm, cmap="Blues")
  ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
  ax.set_yticks(range(len(labels)), labels)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  for (i, j), v in np.ndenumerate(cm):
    ax.text(j, i, str(v), ha="center", va="center",
            color="white" if v > cm.max() / 2 else "black", fontsize=8)
  fileio.save_figure(fig, path)
  return True


def plot_history(histories, path, phase_epochs=()):
  """Training curves: loss and accuracy (train/val) over all stages, one x axis."""
  plt = _figure()
  if plt is None:
    return False
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8))
  offset = 0
  for stage, hist in histories:
    n = len(hist.get("loss", []))
    xs = np.arange(offset + 1, offset + n + 1)
    for key, style in (("loss", "-"), ("val_loss", "--")):
      if key in hist:
        ax_loss.plot(xs, hist[key], style, label=f"{stage} {key}")
    for key, style in (("accuracy", "-"), ("val_accuracy", "--")):
      if key in hist:
        ax_acc.plot(xs, hist[key], style, label=f"{stage} {key}")
    offset += n
  for boundary in np.cumsum(phase_epochs)[:-1] if len(phase_epochs) else []:
    for ax in (ax_loss, ax_acc):
      ax.axvline(boundary + 0.5, color="grey", lw=0.8, ls=":")
  ax_loss.set_xlabel("epoch")
  ax_loss.set_ylabel("loss")
  ax_acc.set_xlabel("epoch")
  ax_acc.set_ylabel("accuracy")
  ax_loss.legend(fontsize=7)
  ax_acc.legend(fontsize=7)
  fileio.save_figure(fig, path)
  return True


def _table(rows, header):
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def markdown(report):
  """Renders the report dict as Markdown (the plots are referenced by file name)."""
  acc = report["accuracy"]
  size = report["size"]
  cfg = report["config"]
  out = [
      f"# {cfg['cell']} on {cfg['dataset']}",
      "",
      f"Command: `{report['command']}`  ",
      f"Finished {report['finished']} in {report['seconds']:.0f} s.",
      "",
  ]
  if report.get("warnings"):
    out += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
  out += [
      "## Accuracy on the test set",
      "",
      _table([[k, f"{100 * v:.2f}%"] for k, v in acc.items() if v is not None],
             ["model", "top-1"]),
      "",
      f"Macro-F1 of the int8 TFLM model: {report['macro_f1_tflm']:.4f}",
      "",
  ]
  export = report.get("export") or {}  # absent in reports written before it
  if export:
    out += [f"int8 step model: {export['step_model']}"
            + (f"; the LSTM's σ(f)·c on {export['lstm_forget_product_grid']}"
               if export.get("lstm_forget_product_grid") else "") + ".", ""]
    if export.get("readout") == "mean":
      out += ["Read-out: mean (`--readout=mean`): a window's class is the argmax of the "
              "sum of its steps' int8 logits (int32), as the device computes it.", ""]
    elif export.get("readout"):
      out += ["Read-out: last (a window's class is its last step's logits' argmax).", ""]
  plots = report.get("plots", True)  # False: matplotlib was not installed
  out += [
      "![confusion matrix](confusion_tflm.png)" if plots else fileio.PLOT_HINT + ".",
      "",
      "## Size",
      "",
      _table([[k, v] for k, v in size.items()], ["what", "value"]),
      "",
      "TFLite stores weights dense: sparsity lowers the non-zero count (what a sparse",
      "kernel or compressed weights would store), not the `.tflite` bytes.",
      "",
      "## Sparsity per matrix",
      "",
      _table([[name, s["shape"], s["nonzero"], f"{s['sparsity']:.3f}"]
              for name, s in report["sparsity"].items()],
             ["matrix", "shape", "non-zeros", "sparsity"]),
      "",
      "## Training",
      "",
  ]
  if (report.get("config") or {}).get("train_on_val"):
    out += ["Trained on the training and validation windows together "
            "(`--train_on_val`), last epoch kept: the validation curves below are "
            "in-sample.", ""]
  for note in (report.get("training") or {}).get("notes", []):
    out += [f"{note[0].upper()}{note[1:]}.", ""]
  if plots:
    out += ["![training curves](training.png)", ""]
  if report.get("numerics_md"):
    out += ["## Numerics: Keras ↔ LiteRT ↔ TFLM", "", report["numerics_md"], ""]
    out += ["![numerics](numerics/numerics.png)", ""] if plots else []
  return "\n".join(out)


def write(report, out_dir):
  """Writes ``report.json`` and ``report.md`` into ``out_dir`` (JSON last: it marks done)."""
  fileio.write_text(f"{out_dir}/report.md", markdown(report))
  fileio.write_json(f"{out_dir}/report.json", report)
