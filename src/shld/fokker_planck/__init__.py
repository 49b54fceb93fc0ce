"""fokker_planck"""
