"""Protocol servers the tests run on loopback: a STAC API and a CDSE-style OData catalogue."""
