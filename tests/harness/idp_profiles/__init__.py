"""Emulated identity providers for the shipped IdP profiles (envoy/profiles/*.json): one module
per IdP, each with its token shapes, its endpoints' shapes and error answers, and its common
misconfigurations (see profile.py)."""

from .auth0 import Auth0
from .emulator import IdpEmulator, TokenCall
from .entra import EntraV1, EntraV2
from .google import Google
from .keycloak import Keycloak
from .okta import Okta
from .profile import PROFILES_DIR, SECRET_ENV, IdpProfile, LoadError, Refusal

PROFILES: dict[str, type[IdpProfile]] = {
    profile.name: profile for profile in (Okta, EntraV2, EntraV1, Keycloak, Auth0, Google)}

__all__ = ["PROFILES", "PROFILES_DIR", "SECRET_ENV", "IdpEmulator", "IdpProfile", "LoadError", "Refusal",
           "TokenCall"]
