"""lcd_assets: Dagster definitions of the lcd platform, thin glue over ``lcd_core``."""

import warnings

import dagster as dg

# Deliberate uses, documented in the README: partitioned asset checks (preview in Dagster 1.13)
# and MultiPartitionMapping (beta). Their warnings would repeat in every run's log.
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
