from fastdapo.config.load import ConfigError, config_to_dict, load_config, save_config
from fastdapo.config.schema import Config

__all__ = ["Config", "ConfigError", "load_config", "save_config", "config_to_dict"]
