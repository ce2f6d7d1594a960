"""CGRateS TariffPlans imported as tariffs (``import_cgrates``).

``tp_files`` finds and reads the CSV files as CGRateS does (comments, header names of every
version, column counts); ``tp_values`` parses their values (durations, ``;`` lists,
``*any``); ``tariff_plan`` cross-checks them into a TariffPlan; ``convert`` turns one
RatingPlan into a tariff document priced as CGRateS prices it; ``subscribers`` folds a
subject's RatingProfiles (categories, fallback subjects, activations) into one tariff;
``toml_text`` writes them; ``importer`` runs it all and reports what was left out.
"""

from __future__ import annotations

from rating_engine.cgrates.importer import ImportedTariff, ImportReport, Skipped, import_cgrates

__all__ = ["ImportReport", "ImportedTariff", "Skipped", "import_cgrates"]
