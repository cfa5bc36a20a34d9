"""core/fhir"""
