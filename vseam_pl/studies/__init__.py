"""Studies over many training runs, resumable run by run: the method comparison (`vseam compare`) and the low-data
fraction sweep (`vseam sweep`)."""
