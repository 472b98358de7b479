"""The persons function: face tracks linked to the persons of their case (`functions.persons.core`)."""
