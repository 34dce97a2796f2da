// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      // The Yocto layer's recipes; its tests are TypeScript like the rest.
      'meta-edge/*',
      '!meta-edge/test/',
      '.cache/**',
      'out/**',
      // AssemblyScript, not TypeScript: asc checks these (app/sdk/README.md).
      'app/sdk/assembly/**',
      'app/modules/*/assembly/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      // fastify plugins and hooks are async by contract, with or without an await inside.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The dashboard runs in the browser (type-checked by ota-server/dashboard/tsconfig.json,
    // lib DOM); these globals are for any plain script there, TypeScript files need none.
    files: ['ota-server/dashboard/src/**'],
    languageOptions: {
      globals: Object.fromEntries(
        ['window', 'document', 'navigator', 'location', 'history', 'fetch', 'EventSource'].map(
          (name) => [name, 'readonly'],
        ),
      ),
    },
  },
);
