"""observables"""
