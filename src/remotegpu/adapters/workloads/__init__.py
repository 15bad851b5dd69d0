"""Adapters of the workloads context: job repositories, log store, job runtimes."""
