"""The audience: addresses, subscribers and their lists, CSV import and export, readers' own changes."""
