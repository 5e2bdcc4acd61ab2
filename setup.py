"Packaging for fff_nb: reads every setting from nbdev's `settings.ini` (no pkg_resources, see nbdev-toolchain notes)."
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive']
lic = licenses[cfg['license']]
requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
# optional backends: `<name>_requirements` in settings.ini -> `pip install 'fff_nb[<name>]'` (triton has no dependencies,
# so it never pulls CUDA wheels; JAX's CPU wheels)
extras = {k[:-len('_requirements')]: v.split() for k, v in cfg.items() if k.endswith('_requirements') and k not in ('dev_requirements',)}
min_python = cfg['min_python']
scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    license=lic[0], author=cfg['author'], author_email=cfg['author_email'], url=cfg['git_url'],
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])], 'Intended Audience :: ' + cfg['audience'].title(),
                 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language'].title(),
                 'Programming Language :: Python :: 3', 'Programming Language :: Python :: 3 :: Only'],
    keywords=cfg['keywords'], long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['fff_nb', 'fff_nb.*']),
    include_package_data=True,
    package_data={'fff_nb': ['csrc/*', 'csrc/**/*']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements, **extras},
    python_requires='>=' + min_python,
    zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
