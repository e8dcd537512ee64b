"""protections"""
