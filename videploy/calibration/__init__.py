"""Post-training fitting on data: INT8 Q/DQ quantization and AdaFocusV3 exit thresholds."""

from videploy.calibration.dynamic_evaluation import DynamicPoint, budget_search, choose_for_budget, dynamic_evaluation
from videploy.calibration.exit_thresholds import BudgetSolution, fit_exit_thresholds, fit_thresholds

__all__ = ["BudgetSolution", "DynamicPoint", "budget_search", "choose_for_budget", "dynamic_evaluation", "fit_exit_thresholds", "fit_thresholds"]
