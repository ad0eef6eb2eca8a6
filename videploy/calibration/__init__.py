"""Post-training fitting on data: INT8 Q/DQ quantization and AdaFocusV3 exit thresholds."""
