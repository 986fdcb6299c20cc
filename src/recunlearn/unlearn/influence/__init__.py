"""Influence-function machinery shared by IFRU, IF and SCIF (the methods themselves live one level up)."""
