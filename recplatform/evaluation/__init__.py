"""Offline evaluation: protocols (cold-user, warm, new-item), metrics, baselines, platform strategies, reports.

Entry points: :func:`recplatform.evaluation.runner.run_evaluation` and the ``recplatform evaluate`` command.
"""
