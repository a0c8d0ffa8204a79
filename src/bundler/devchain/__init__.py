from .anvil import ANVIL_ACCOUNT0, ANVIL_ACCOUNT0_KEY, Anvil, free_port, start_anvil
from .deploy import Deployment, deploy_all, fund
from .sessions import SessionDeployment, deploy_sessions

__all__ = ["ANVIL_ACCOUNT0", "ANVIL_ACCOUNT0_KEY", "Anvil", "Deployment", "deploy_all", "free_port",
           "fund", "start_anvil", "SessionDeployment", "deploy_sessions"]
